// Error types. Every user or I/O problem is reported by throwing one of these, never by abort();
// the tools catch them in main() and print the message (which names the file and the problem).
#pragma once
#include <stdexcept>
#include <string>

namespace vggcache {

// What went wrong, so callers and tests can tell failures apart without parsing messages.
enum class ErrorKind {
  kInvalidArgument,  // a flag or setting is out of range
  kIo,               // a file could not be read or written (includes disk full)
  kNotACache,        // the directory is not a vggcache cache
  kSchema,           // unknown schema version or codec
  kCorrupt,          // checksum mismatch, truncated data, malformed file
  kMismatch,         // settings / dimension / weights differ from what was expected
  kIncomplete,       // cache not marked complete and the caller did not allow that
  kLocked,           // another writer holds the cache
  kBadImage,         // an image file could not be decoded
  kBadWeights,       // a weights file is malformed or has the wrong architecture
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace vggcache
