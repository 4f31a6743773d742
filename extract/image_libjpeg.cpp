#include "extract/image_libjpeg.h"

#include <csetjmp>
#include <cstdio>
// jpeglib.h needs size_t and FILE declared before it.
#include <jpeglib.h>

#include "common/error.h"

namespace vggcache {

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {};
};

[[noreturn]] void error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (corrupt data that libjpeg decodes anyway) are accepted, as OpenCV accepts them; only
// their printing to stderr is suppressed. Truncation is refused earlier, from the header scan.
void emit_message(j_common_ptr, int) {}

}  // namespace

RgbImage decode_jpeg_libjpeg(const std::string& data, const std::string& path) {
  jpeg_decompress_struct cinfo{};
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = error_exit;
  err.pub.emit_message = emit_message;
  RgbImage out;  // declared before setjmp: nothing with a destructor is created after it
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(ErrorKind::kBadImage, path + ": cannot decode JPEG: " + err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(data.data()),
               static_cast<unsigned long>(data.size()));
  jpeg_read_header(&cinfo, TRUE);
  const bool grey = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(ErrorKind::kBadImage, path +
                                          ": CMYK/YCCK JPEG: not supported by the libjpeg-only "
                                          "decoder (VGGCACHE_IMAGE_DECODER=libjpeg)");
  }
  cinfo.out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  out.pixels.resize(static_cast<size_t>(out.width) * out.height * 3);
  const size_t row_bytes = static_cast<size_t>(out.width) * cinfo.output_components;
  // One row at a time into the output's own rows; grey rows are widened in place from the end.
  while (cinfo.output_scanline < cinfo.output_height) {
    unsigned char* row =
        out.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * out.width * 3;
    JSAMPROW rows[1] = {row};
    jpeg_read_scanlines(&cinfo, rows, 1);
    if (grey) {
      for (size_t x = row_bytes; x-- > 0;) row[3 * x] = row[3 * x + 1] = row[3 * x + 2] = row[x];
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return out;
}

}  // namespace vggcache
