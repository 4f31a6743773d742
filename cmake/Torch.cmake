# Finds LibTorch: Debian's libtorch-dev by default, or the one under VGGCACHE_TORCH_PREFIX (an
# unpacked libtorch archive from pytorch.org, or a pip torch's torch.utils.cmake_prefix_path).
# Then refuses a LibTorch whose libstdc++ ABI differs from the rest of the build: every other
# library (OpenCV, fmt, spdlog, TBB, LMDB...) and vggcache's own code use the compiler's default
# ABI, and std::string crosses between them and extract_core, so a mismatch would only show up
# as undefined references at link time.
set(VGGCACHE_TORCH_PREFIX "" CACHE PATH
    "Another LibTorch: an unpacked libtorch archive, or a pip torch's torch.utils.cmake_prefix_path (empty: Debian's)")

if(VGGCACHE_TORCH_PREFIX)
  get_filename_component(_vggcache_prefix "${VGGCACHE_TORCH_PREFIX}" ABSOLUTE)
  if(NOT IS_DIRECTORY "${_vggcache_prefix}")
    message(FATAL_ERROR "VGGCACHE_TORCH_PREFIX=${VGGCACHE_TORCH_PREFIX}: no such directory")
  endif()
  # A Torch_DIR cached by an earlier configure (Debian's, or another prefix) would win otherwise.
  if(Torch_DIR AND NOT Torch_DIR MATCHES "^${_vggcache_prefix}/")
    unset(Torch_DIR CACHE)
  endif()
  find_package(Torch QUIET PATHS "${_vggcache_prefix}" "${_vggcache_prefix}/share/cmake"
               NO_DEFAULT_PATH)
  if(NOT Torch_FOUND)
    message(FATAL_ERROR
      "VGGCACHE_TORCH_PREFIX=${VGGCACHE_TORCH_PREFIX}: no usable TorchConfig.cmake there (looked "
      "in it, in Torch/ and share/cmake/Torch/ under it). Give the unpacked libtorch directory or "
      "the output of python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'. A CUDA "
      "LibTorch's config also needs the CUDA toolkit (nvcc) to be found.")
  endif()
else()
  find_package(Torch REQUIRED)
endif()

include(CheckCXXSourceCompiles)
check_cxx_source_compiles([=[
#include <string>
#if !_GLIBCXX_USE_CXX11_ABI
#error old ABI
#endif
int main() { return 0; }
]=] VGGCACHE_DEFAULT_CXX11_ABI)
if(VGGCACHE_DEFAULT_CXX11_ABI)
  set(_vggcache_abi 1)
else()
  set(_vggcache_abi 0)
endif()
string(REGEX MATCH "_GLIBCXX_USE_CXX11_ABI=([01])" _vggcache_torch_abi_flag "${TORCH_CXX_FLAGS}")
if(_vggcache_torch_abi_flag)
  set(VGGCACHE_TORCH_CXX11_ABI "${CMAKE_MATCH_1}")
  if(NOT VGGCACHE_TORCH_CXX11_ABI EQUAL _vggcache_abi)
    message(FATAL_ERROR
      "LibTorch at ${Torch_DIR} is built with -D_GLIBCXX_USE_CXX11_ABI=${VGGCACHE_TORCH_CXX11_ABI} "
      "(its TORCH_CXX_FLAGS), but this compiler and the system C++ libraries vggcache links "
      "(OpenCV, fmt, spdlog, TBB, LMDB) use _GLIBCXX_USE_CXX11_ABI=${_vggcache_abi}: std::string "
      "and std::list would differ between extract and the rest, and the link would fail. Use a "
      "LibTorch built with the cxx11 ABI (the libtorch-cxx11-abi-* archives from pytorch.org, or "
      "pip torch >= 2.7, whose wheels use it), or leave VGGCACHE_TORCH_PREFIX empty for Debian's.")
  endif()
else()
  message(WARNING "LibTorch at ${Torch_DIR}: TORCH_CXX_FLAGS (\"${TORCH_CXX_FLAGS}\") names no "
                  "_GLIBCXX_USE_CXX11_ABI; assuming the compiler's default")
endif()

# The CUDA-only code (extract's free-memory query) compiles only against a LibTorch with CUDA.
if(TARGET c10_cuda OR TORCH_LIBRARIES MATCHES "c10_cuda")
  set(VGGCACHE_TORCH_CUDA ON)
else()
  set(VGGCACHE_TORCH_CUDA OFF)
endif()
message(STATUS "LibTorch ${Torch_VERSION} at ${Torch_DIR} (CUDA: ${VGGCACHE_TORCH_CUDA})")
