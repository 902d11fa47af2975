// Fuzz target: the safetensors reader (runtime/model/safetensors_file.*): the header length, the JSON
// header and its offsets against the file size. The input is a whole file, written to a memfd and opened
// through /proc/self/fd like any checkpoint file. Opening either throws ModelError or gives a file whose
// every tensor lies inside the file with exactly shape x dtype bytes; those tensors are then read.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/model/model_error.h"
#include "runtime/model/safetensors_file.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

int memfd() {
  static int fd = memfd_create("fuzz.safetensors", 0);
  FUZZ_CHECK(fd >= 0, "memfd_create failed");
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int fd = memfd();
  FUZZ_CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, data, size, 0) == static_cast<ssize_t>(size), "memfd write failed");
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  std::shared_ptr<const moe::SafetensorsFile> file;
  try {
    file = moe::SafetensorsFile::open(path);
  } catch (const moe::ModelError&) {
    return 0;
  }
  FUZZ_CHECK(size >= 8, "a %zu-byte file opened", size);
  size_t total = 0;
  for (const std::string& name : file->names()) {
    moe::TensorView t;
    try {
      t = file->tensor(name);
    } catch (const moe::ModelError&) {
      continue;  // a dtype the runtime does not compute in
    }
    FUZZ_CHECK(t.nbytes == moe::tensor_nbytes(t.dtype, t.shape), "tensor '%s': %zu bytes for shape %s", name.c_str(),
               t.nbytes, t.shape_string().c_str());
    total += t.nbytes;
    FUZZ_CHECK(total <= size, "tensors hold %zu bytes in a %zu-byte file", total, size);
    FUZZ_CHECK(t.numel() >= 0, "tensor '%s' has %lld elements", name.c_str(), static_cast<long long>(t.numel()));
    if (t.shape.size() == 2) (void)moe::tensor_to_matrix(t);
    (void)moe::tensor_to_floats(t);
  }
  (void)file->metadata();
  return 0;
}
