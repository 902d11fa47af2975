// One .safetensors file: a validated, memory-mapped reader and a streaming writer.
//
// Format (https://github.com/huggingface/safetensors): u64 little-endian header length N, N bytes of
// JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the byte
// buffer; offsets are relative to the buffer. The reader checks the header length against the file
// size, that the JSON parses, and that every tensor's offsets are in range, ordered, non-overlapping
// and match shape × dtype size. Every failure is a one-line ModelError naming the file.
// Tensors of dtypes this runtime does not compute in (I64, F64, F8_*, ...) are validated but refused
// when asked for, so a checkpoint that carries a few of them still opens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/model/tensor.h"

namespace moe {

class SafetensorsFile;

// One tensor inside a mapped file. `data` stays valid while `file` (or any copy of it) lives.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;      // meaningful only for F32/BF16/F16 tensors
  std::string dtype_name;        // the file's name of the dtype ("BF16", "F8_E4M3", "U8", ...)
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const SafetensorsFile> file;

  int64_t numel() const;
  std::string shape_string() const;  // "[16, 64]"
};

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  // Maps and validates the file. Throws ModelError naming the file on any problem.
  static std::shared_ptr<const SafetensorsFile> open(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // Throws ModelError: "tensor 'X' not found in FILE", or "FILE: tensor 'X' has unsupported dtype I64
  // (supported: F32, BF16, F16)".
  TensorView tensor(const std::string& name) const;
  // The tensor whatever its dtype (quantized weights: F8_E4M3, U8); read dtype_name, not dtype.
  TensorView raw_tensor(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Entry {
    std::string dtype_name;
    std::optional<DType> dtype;  // empty: a dtype this runtime does not compute in
    std::vector<int64_t> shape;
    size_t begin = 0;
    size_t end = 0;
  };
  SafetensorsFile() = default;
  void parse_header(const char* header, size_t header_len, size_t buffer_len);

  std::filesystem::path path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const std::byte* buffer_ = nullptr;  // start of the byte buffer (after the header)
  std::unordered_map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write; `bytes` must hold exactly shape × dtype_size bytes and outlive the call.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;
};

// Writes a .safetensors file (header padded with spaces to a multiple of 8, tensors in the given order,
// metadata {"format": "pt"} plus `metadata`). Writes PATH.tmp and renames it over PATH.
void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Streaming writer for files too large to hold in memory twice: declare every tensor, then
// begin(), then write each tensor's bytes in declaration order (in one or several pieces), then finish().
class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::filesystem::path path, std::map<std::string, std::string> metadata = {});
  ~SafetensorsWriter();  // removes the temp file if finish() was not reached
  void declare(const std::string& name, DType dtype, std::vector<int64_t> shape);
  // A tensor of a dtype the runtime does not compute in (e.g. "I32" for routing ids).
  void declare_raw(const std::string& name, const std::string& dtype, size_t element_size, std::vector<int64_t> shape);
  void begin();
  void write(std::span<const std::byte> bytes);  // throws if more than the declared tensors' bytes
  void finish();                                 // throws if fewer bytes were written than declared
  size_t data_bytes() const { return total_; }

 private:
  struct Declared {
    std::string name;
    std::string dtype;  // safetensors dtype name
    std::vector<int64_t> shape;
    size_t nbytes = 0;
  };
  std::filesystem::path path_;
  std::filesystem::path tmp_;
  std::map<std::string, std::string> metadata_;
  std::vector<Declared> declared_;
  size_t total_ = 0;
  size_t written_ = 0;
  std::FILE* out_ = nullptr;
  bool finished_ = false;
};

// Byte size of a tensor of `shape` and `dtype`; throws ModelError on negative dims or overflow.
size_t tensor_nbytes(DType dtype, const std::vector<int64_t>& shape);

// f32 copies of tensors (BF16/F16 widened exactly). read_matrix requires a 2-D tensor; a -1 in the
// expected shape matches any size. Mismatch: "tensor 'NAME' has shape [a, b], expected [c, d]".
Matrix tensor_to_matrix(const TensorView& t, int64_t expect_rows = -1, int64_t expect_cols = -1);
std::vector<float> tensor_to_floats(const TensorView& t);  // any shape, flattened row-major
Matrix read_matrix(const SafetensorsFile& file, const std::string& name, int64_t expect_rows = -1,
                   int64_t expect_cols = -1);

// The bytes of a Matrix stored as `dtype` (F32 copy, BF16 round-to-nearest-even, F16 round-to-nearest).
std::vector<std::byte> encode_floats(std::span<const float> values, DType dtype);
uint16_t f32_to_f16(float f);

}  // namespace moe
