// Writing .safetensors files: a streaming writer (declare, begin, write bytes, finish) and a one-call
// wrapper. Output goes to PATH.tmp first and is renamed into place, so a crash never leaves a half file.
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"
#include "runtime/model/safetensors_file.h"

namespace moe {

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, std::map<std::string, std::string> metadata)
    : path_(std::move(path)), metadata_(std::move(metadata)) {
  tmp_ = path_;
  tmp_ += ".tmp";
  metadata_.emplace("format", "pt");
}

SafetensorsWriter::~SafetensorsWriter() {
  if (out_) std::fclose(out_);
  if (!finished_ && !tmp_.empty()) {
    std::error_code ec;
    std::filesystem::remove(tmp_, ec);
  }
}

void SafetensorsWriter::declare(const std::string& name, DType dtype, std::vector<int64_t> shape) {
  declare_raw(name, dtype_name(dtype), dtype_size(dtype), std::move(shape));
}

void SafetensorsWriter::declare_raw(const std::string& name, const std::string& dtype, size_t element_size,
                                    std::vector<int64_t> shape) {
  if (out_) throw ModelError(path_.string() + ": declare('" + name + "') after begin()");
  if (name.empty() || name == "__metadata__") throw ModelError(path_.string() + ": invalid tensor name '" + name + "'");
  for (const Declared& d : declared_)
    if (d.name == name) throw ModelError(path_.string() + ": tensor '" + name + "' declared twice");
  size_t n = tensor_nbytes(DType::F32, shape) / 4 * element_size;
  total_ += n;
  declared_.push_back({name, dtype, std::move(shape), n});
}

void SafetensorsWriter::begin() {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = metadata_;
  size_t offset = 0;
  for (const Declared& d : declared_) {
    header[d.name] = {{"dtype", d.dtype}, {"shape", d.shape}, {"data_offsets", {offset, offset + d.nbytes}}};
    offset += d.nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  out_ = std::fopen(tmp_.c_str(), "wb");
  if (!out_) throw ModelError(tmp_.string() + ": cannot create: " + std::strerror(errno));
  unsigned char len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  if (std::fwrite(len, 1, 8, out_) != 8 || std::fwrite(text.data(), 1, text.size(), out_) != text.size())
    throw ModelError(tmp_.string() + ": write failed: " + std::strerror(errno));
}

void SafetensorsWriter::write(std::span<const std::byte> bytes) {
  if (!out_) throw ModelError(path_.string() + ": write() before begin()");
  if (written_ + bytes.size() > total_)
    throw ModelError(path_.string() + ": " + std::to_string(written_ + bytes.size()) +
                     " bytes written, more than the " + std::to_string(total_) + " declared");
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), out_) != bytes.size())
    throw ModelError(tmp_.string() + ": write failed: " + std::strerror(errno));
  written_ += bytes.size();
}

void SafetensorsWriter::finish() {
  if (!out_) begin();
  if (written_ != total_)
    throw ModelError(path_.string() + ": " + std::to_string(written_) + " bytes written, " + std::to_string(total_) +
                     " declared");
  int rc = std::fclose(out_);
  out_ = nullptr;
  if (rc != 0) throw ModelError(tmp_.string() + ": close failed: " + std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(tmp_, path_, ec);
  if (ec) throw ModelError(path_.string() + ": cannot rename " + tmp_.string() + " into place: " + ec.message());
  finished_ = true;
}

void write_safetensors(const std::filesystem::path& path, std::span<const TensorToWrite> tensors,
                       const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w(path, metadata);
  for (const TensorToWrite& t : tensors) {
    size_t n = tensor_nbytes(t.dtype, t.shape);
    if (n != t.bytes.size())
      throw ModelError(path.string() + ": tensor '" + t.name + "' has " + std::to_string(t.bytes.size()) +
                       " bytes, its shape and dtype " + dtype_name(t.dtype) + " need " + std::to_string(n));
    w.declare(t.name, t.dtype, t.shape);
  }
  w.begin();
  for (const TensorToWrite& t : tensors) w.write(t.bytes);
  w.finish();
}

}  // namespace moe
