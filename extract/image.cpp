// Decoding with OpenCV, plus the few checks and conversions OpenCV does differently from PIL:
//   * the pixel count is read from the header (JPEG, PNG, BMP, PNM, WebP, TIFF) before decoding,
//     and checked again on the decoded size;
//   * a JPEG without its end-of-image marker is refused (libjpeg pads it with grey, PIL raises
//     "image file is truncated"); a PNG that ends cleanly after its last chunk but lacks IEND is
//     accepted (PIL reads it, libpng does not until IEND is appended);
//   * 16-bit samples are mapped to 8 bits the way PIL's convert("RGB") does it (see to_8bit()).
#include "extract/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#ifdef VGGCACHE_IMAGE_LIBJPEG
#include "extract/image_libjpeg.h"
#else
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#endif
#include <string>
#include <system_error>

#include "common/error.h"

namespace vggcache {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& reason) {
  throw Error(ErrorKind::kBadImage, path + ": " + reason);
}

std::string errno_text(int e) {
  return std::generic_category().message(e);
}

// Reads the whole file. Refuses anything that is not a regular file (directories, FIFOs), so a
// directory named x.jpg or a device never reaches the decoder.
std::string read_all(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    struct stat ls;
    if (e == ENOENT && ::lstat(path.c_str(), &ls) == 0 && S_ISLNK(ls.st_mode)) {
      fail(path, "dangling symbolic link");
    }
    fail(path, "cannot open: " + errno_text(e));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(path, "cannot stat: " + errno_text(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail(path, "is a directory, not an image file");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  std::string data;
  data.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::read(fd, &data[got], data.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      fail(path, "read error: " + errno_text(e));
    }
    if (n == 0) break;  // the file shrank while we read it
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  data.resize(got);
  return data;
}

enum class Format { kUnknown, kJpeg, kPng, kBmp, kPnm, kWebp, kTiff };

const char* format_name(Format f) {
  switch (f) {
    case Format::kJpeg:
      return "JPEG";
    case Format::kPng:
      return "PNG";
    case Format::kBmp:
      return "BMP";
    case Format::kPnm:
      return "PNM";
    case Format::kWebp:
      return "WebP";
    case Format::kTiff:
      return "TIFF";
    default:
      return "unknown";
  }
}

// What the header says; width/height 0 when the parser does not know the format.
struct HeaderInfo {
  Format format = Format::kUnknown;
  uint64_t width = 0, height = 0;
  bool gray_source = false;  // single-channel source: PIL clips 16-bit values instead of scaling
  int pnm_maxval = 255;      // PIL rescales PNM samples by 255 / maxval
  bool jpeg_complete = false;
  bool png_needs_iend = false;
};

uint32_t be16(const std::string& d, size_t i) {
  return (uint32_t(uint8_t(d[i])) << 8) | uint8_t(d[i + 1]);
}
uint32_t be32(const std::string& d, size_t i) {
  return (be16(d, i) << 16) | be16(d, i + 2);
}
uint32_t le16(const std::string& d, size_t i) {
  return (uint32_t(uint8_t(d[i + 1])) << 8) | uint8_t(d[i]);
}
uint32_t le32(const std::string& d, size_t i) {
  return (le16(d, i + 2) << 16) | le16(d, i);
}
bool starts_with(const std::string& d, const char* magic, size_t n) {
  return d.size() >= n && std::memcmp(d.data(), magic, n) == 0;
}

// Walks the JPEG marker structure: frame size from SOFn, and whether an EOI marker is reached
// after the last scan. libjpeg (hence OpenCV) silently pads a cut-off scan; PIL raises instead.
void parse_jpeg(const std::string& d, HeaderInfo* h) {
  size_t i = 2, n = d.size();
  while (i < n) {
    if (uint8_t(d[i]) != 0xFF) {
      ++i;  // stray byte between segments: libjpeg skips it with a warning
      continue;
    }
    while (i < n && uint8_t(d[i]) == 0xFF) ++i;  // fill bytes
    if (i >= n) return;
    uint8_t m = uint8_t(d[i++]);
    if (m == 0xD9) {
      h->jpeg_complete = true;
      return;
    }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue;  // markers without a length
    if (i + 2 > n) return;
    size_t len = be16(d, i);
    if (len < 2 || i + len > n) return;  // segment cut off
    bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (sof && len >= 8 && h->width == 0) {
      h->height = be16(d, i + 3);
      h->width = be16(d, i + 5);
      h->gray_source = uint8_t(d[i + 7]) == 1;
    }
    i += len;
    if (m == 0xDA) {  // entropy-coded data runs to the next marker that is not RSTn or stuffing
      while (i + 1 < n) {
        if (uint8_t(d[i]) == 0xFF) {
          uint8_t b = uint8_t(d[i + 1]);
          if (b != 0 && b != 0xFF && !(b >= 0xD0 && b <= 0xD7)) break;
        }
        ++i;
      }
      if (i + 1 >= n) return;
    }
  }
}

// IHDR gives the size; the chunk walk tells whether the file merely lacks IEND (PIL accepts
// that: it stops once the pixel data is decoded) or is cut inside a chunk.
void parse_png(const std::string& d, HeaderInfo* h) {
  if (d.size() < 8 + 8 + 13 || std::memcmp(d.data() + 12, "IHDR", 4) != 0) return;
  h->width = be32(d, 16);
  h->height = be32(d, 20);
  h->gray_source = uint8_t(d[25]) == 0;  // colour type 0: grey without alpha
  size_t i = 8;
  bool idat = false;
  while (i + 8 <= d.size()) {
    uint64_t len = be32(d, i);
    if (std::memcmp(d.data() + i + 4, "IEND", 4) == 0) return;
    if (std::memcmp(d.data() + i + 4, "IDAT", 4) == 0) idat = true;
    if (i + 12 + len > d.size()) return;  // cut inside a chunk: let libpng report it
    i += 12 + len;
  }
  h->png_needs_iend = idat && i == d.size();
}

void parse_pnm(const std::string& d, HeaderInfo* h) {
  // "P5 <w> <h> <maxval>" with whitespace and # comments; P1/P4 (bitmaps) have no maxval.
  uint64_t v[3] = {0, 0, 255};
  int want = (d[1] == '1' || d[1] == '4') ? 2 : 3;
  size_t i = 2;
  for (int k = 0; k < want; ++k) {
    while (i < d.size() && (std::isspace(uint8_t(d[i])) || d[i] == '#')) {
      if (d[i] == '#') {
        while (i < d.size() && d[i] != '\n') ++i;
      } else {
        ++i;
      }
    }
    uint64_t x = 0;
    size_t start = i;
    while (i < d.size() && std::isdigit(uint8_t(d[i])) && i - start < 12)
      x = x * 10 + (d[i++] - '0');
    if (i == start) return;
    v[k] = x;
  }
  h->width = v[0];
  h->height = v[1];
  h->pnm_maxval = static_cast<int>(std::min<uint64_t>(v[2], 65535));
  h->gray_source = d[1] != '3' && d[1] != '6';
}

void parse_webp(const std::string& d, HeaderInfo* h) {
  if (d.size() < 30) return;
  if (std::memcmp(d.data() + 12, "VP8 ", 4) == 0) {
    h->width = le16(d, 26) & 0x3FFF;
    h->height = le16(d, 28) & 0x3FFF;
  } else if (std::memcmp(d.data() + 12, "VP8L", 4) == 0) {
    uint32_t b = le32(d, 21);
    h->width = (b & 0x3FFF) + 1;
    h->height = ((b >> 14) & 0x3FFF) + 1;
  } else if (std::memcmp(d.data() + 12, "VP8X", 4) == 0) {
    h->width = (le32(d, 24) & 0xFFFFFF) + 1;
    h->height = (le32(d, 27) & 0xFFFFFF) + 1;
  }
}

// ImageWidth (256) / ImageLength (257) from the first IFD, so a TIFF bomb is refused before
// OpenCV allocates it (OpenCV's own cap is 2^30 pixels).
void parse_tiff(const std::string& d, HeaderInfo* h) {
  const bool le = d[0] == 'I';
  auto u16 = [&](size_t i) { return le ? le16(d, i) : be16(d, i); };
  auto u32 = [&](size_t i) { return le ? le32(d, i) : be32(d, i); };
  if (d.size() < 8) return;
  size_t ifd = u32(4);
  if (ifd + 2 > d.size()) return;
  size_t entries = u16(ifd);
  for (size_t e = 0; e < entries; ++e) {
    size_t at = ifd + 2 + e * 12;
    if (at + 12 > d.size()) return;
    uint32_t tag = u16(at), type = u16(at + 2);
    if (tag != 256 && tag != 257) continue;
    uint32_t v = type == 3 ? u16(at + 8) : type == 4 ? u32(at + 8) : 0;
    (tag == 256 ? h->width : h->height) = v;
  }
}

HeaderInfo parse_header(const std::string& d) {
  HeaderInfo h;
  if (starts_with(d, "\xFF\xD8\xFF", 3)) {
    h.format = Format::kJpeg;
    parse_jpeg(d, &h);
  } else if (starts_with(d, "\x89PNG\r\n\x1A\n", 8)) {
    h.format = Format::kPng;
    parse_png(d, &h);
  } else if (starts_with(d, "BM", 2) && d.size() >= 26) {
    h.format = Format::kBmp;
    h.width = le32(d, 18);
    int32_t ht = static_cast<int32_t>(le32(d, 22));  // negative: top-down rows
    h.height = ht < 0 ? -int64_t(ht) : ht;
  } else if (d.size() >= 3 && d[0] == 'P' && d[1] >= '1' && d[1] <= '6' &&
             std::isspace(uint8_t(d[2]))) {
    h.format = Format::kPnm;
    parse_pnm(d, &h);
  } else if (starts_with(d, "RIFF", 4) && d.size() >= 12 &&
             std::memcmp(d.data() + 8, "WEBP", 4) == 0) {
    h.format = Format::kWebp;
    parse_webp(d, &h);
  } else if (starts_with(d, "II*\0", 4) || starts_with(d, "MM\0*", 4)) {
    h.format = Format::kTiff;
    parse_tiff(d, &h);
  }
  return h;
}

#ifndef VGGCACHE_IMAGE_LIBJPEG
// One 16-bit (or wider) sample to 8 bits as PIL's convert("RGB") ends up doing it:
// grey sources open as mode "I"/"I;16" and I->RGB clips to 255; colour PNG/TIFF samples keep
// their high byte (rawmode "RGB;16B"); PNM samples are rescaled by 255 / maxval.
struct SampleMap {
  bool clip = false;
  int pnm_maxval = 0;  // != 0: rescale
  uint8_t operator()(uint32_t v) const {
    if (pnm_maxval) {
      return static_cast<uint8_t>(
          std::min<uint32_t>(255, (v * 255u + pnm_maxval / 2) / pnm_maxval));
    }
    if (clip) return static_cast<uint8_t>(std::min<uint32_t>(v, 255));
    return static_cast<uint8_t>(v >> 8);
  }
};

template <typename T>
void to_rgb(const cv::Mat& m, const SampleMap& map, bool identity, RgbImage* out) {
  const int ch = m.channels();
  // OpenCV's channel order is B,G,R(,A); one or two channels are grey (+ alpha).
  const int ri = ch >= 3 ? 2 : 0, gi = ch >= 3 ? 1 : 0, bi = 0;
  for (int y = 0; y < m.rows; ++y) {
    const T* row = m.ptr<T>(y);
    uint8_t* o = out->pixels.data() + size_t(y) * m.cols * 3;
    for (int x = 0; x < m.cols; ++x, row += ch, o += 3) {
      if (identity) {
        o[0] = static_cast<uint8_t>(row[ri]);
        o[1] = static_cast<uint8_t>(row[gi]);
        o[2] = static_cast<uint8_t>(row[bi]);
      } else {
        o[0] = map(row[ri]);
        o[1] = map(row[gi]);
        o[2] = map(row[bi]);
      }
    }
  }
}
#endif

}  // namespace

RgbImage decode_image(const std::string& path, const DecodeLimits& limits) {
  std::string data = read_all(path);
  if (data.empty()) fail(path, "empty file");

  HeaderInfo h = parse_header(data);
  if (h.format == Format::kUnknown) fail(path, "not a recognised image format");
  if (h.width && h.height && h.width * h.height > limits.max_pixels) {
    fail(path, "image too large: " + std::to_string(h.width) + "x" + std::to_string(h.height) +
                   " pixels exceeds the limit of " + std::to_string(limits.max_pixels) +
                   " (decompression-bomb guard)");
  }
  if (h.format == Format::kJpeg && !h.jpeg_complete) {
    fail(path, "truncated JPEG (image file is truncated: no end-of-image marker)");
  }
  if (h.format == Format::kPng && h.png_needs_iend) data.append("\0\0\0\0IEND\xAE\x42\x60\x82", 12);

#ifdef VGGCACHE_IMAGE_LIBJPEG
  if (h.format != Format::kJpeg) {
    fail(path, std::string(format_name(h.format)) +
                   ": this build decodes JPEG only (VGGCACHE_IMAGE_DECODER=libjpeg, no OpenCV)");
  }
  RgbImage jpeg = decode_jpeg_libjpeg(data, path);
  if (uint64_t(jpeg.width) * uint64_t(jpeg.height) > limits.max_pixels) {
    fail(path, "image too large: " + std::to_string(jpeg.width) + "x" +
                   std::to_string(jpeg.height) + " pixels exceeds the limit of " +
                   std::to_string(limits.max_pixels));
  }
  return jpeg;
#else
  cv::Mat m;
  try {
    cv::Mat buf(1, static_cast<int>(data.size()), CV_8UC1, data.data());
    m = cv::imdecode(buf, cv::IMREAD_UNCHANGED | cv::IMREAD_IGNORE_ORIENTATION);
  } catch (const cv::Exception& e) {
    fail(path, std::string("cannot decode ") + format_name(h.format) + ": " + e.what());
  }
  if (m.empty() || m.rows <= 0 || m.cols <= 0) {
    fail(path, std::string("cannot decode ") + format_name(h.format) +
                   " data (truncated, corrupt or unsupported)");
  }
  if (uint64_t(m.rows) * uint64_t(m.cols) > limits.max_pixels) {
    fail(path, "image too large: " + std::to_string(m.cols) + "x" + std::to_string(m.rows) +
                   " pixels exceeds the limit of " + std::to_string(limits.max_pixels));
  }
  if (m.channels() > 4) fail(path, "unsupported channel count " + std::to_string(m.channels()));

  RgbImage out;
  out.width = m.cols;
  out.height = m.rows;
  out.pixels.resize(size_t(m.rows) * m.cols * 3);
  SampleMap map;
  map.clip =
      h.format == Format::kPng || h.format == Format::kPnm ? h.gray_source : m.channels() == 1;
  if (h.format == Format::kPnm && !(h.gray_source && h.pnm_maxval > 255) && h.pnm_maxval != 255 &&
      h.pnm_maxval > 0) {
    map.pnm_maxval = h.pnm_maxval;
  }
  switch (m.depth()) {
    case CV_8U:
      to_rgb<uint8_t>(m, map, map.pnm_maxval == 0, &out);
      break;
    case CV_16U:
      to_rgb<uint16_t>(m, map, false, &out);
      break;
    default: {
      // Float / 32-bit TIFFs: saturate to 8 bits (PIL's F/I -> RGB clips the same way).
      cv::Mat m8;
      m.convertTo(m8, CV_8U);
      to_rgb<uint8_t>(m8, map, true, &out);
    }
  }
  return out;
#endif
}

}  // namespace vggcache
