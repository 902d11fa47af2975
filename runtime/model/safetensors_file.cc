// SafetensorsFile: mmap a .safetensors file, validate its header and hand out zero-copy tensor views.
#include "runtime/model/safetensors_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"

namespace moe {
namespace {

constexpr size_t kMaxHeaderBytes = 100u << 20;  // the format's own limit

std::optional<DType> supported_dtype(const std::string& name) {
  if (name == "F32") return DType::F32;
  if (name == "BF16") return DType::BF16;
  if (name == "F16") return DType::F16;
  return std::nullopt;
}

// Element size of dtypes the format defines; 0 for names it does not know (size then unchecked).
size_t format_dtype_size(const std::string& name) {
  static const std::pair<const char*, size_t> sizes[] = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},     {"U32", 4},     {"F32", 4},     {"F64", 8},
      {"I64", 8},  {"U64", 8}, {"C64", 8}};
  for (const auto& [n, s] : sizes)
    if (name == n) return s;
  return 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const { return shape_str(shape); }

size_t tensor_nbytes(DType dtype, const std::vector<int64_t>& shape) {
  size_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) throw ModelError("negative dimension in shape " + shape_str(shape));
    if (__builtin_mul_overflow(n, static_cast<size_t>(d), &n))
      throw ModelError("shape " + shape_str(shape) + " is too large");
  }
  return n;
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const std::string where = path.string();
  int fd = ::open(where.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ModelError(where + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw ModelError(where + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ModelError(where + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw ModelError(where + ": truncated safetensors file (" + std::to_string(size) +
                     " bytes, need at least 8 for the header length)");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) throw ModelError(where + ": mmap failed: " + std::strerror(map_err));
  f->map_ = map;
  f->map_size_ = size;

  const auto* bytes = static_cast<const unsigned char*>(map);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8)
    throw ModelError(where + ": header length " + std::to_string(header_len) + " exceeds the file size " +
                     std::to_string(size) + " (truncated or not a safetensors file)");
  if (header_len > kMaxHeaderBytes)
    throw ModelError(where + ": header length " + std::to_string(header_len) + " exceeds the format limit of " +
                     std::to_string(kMaxHeaderBytes) + " bytes");
  f->buffer_ = reinterpret_cast<const std::byte*>(bytes + 8 + header_len);
  f->parse_header(reinterpret_cast<const char*>(bytes + 8), header_len, size - 8 - header_len);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

void SafetensorsFile::parse_header(const char* header, size_t header_len, size_t buffer_len) {
  const std::string where = path_.string();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header, header + header_len);
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    std::replace_if(what.begin(), what.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
    throw ModelError(where + ": corrupt safetensors header (" + std::to_string(header_len) + " bytes): " + what);
  }
  if (!j.is_object()) throw ModelError(where + ": corrupt safetensors header: not a JSON object");

  struct Range {
    size_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw ModelError(where + ": __metadata__ is not a JSON object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw ModelError(where + ": __metadata__ value '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) {
      throw ModelError(where + ": tensor '" + name + "': " + what + " in header entry " + v.dump());
    };
    if (!v.is_object()) bad("entry is not a JSON object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad("missing or non-string 'dtype'");
    if (!v.contains("shape") || !v["shape"].is_array()) bad("missing or non-list 'shape'");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      bad("'data_offsets' is not a list of two offsets");
    Entry e;
    e.dtype_name = v["dtype"].get<std::string>();
    e.dtype = supported_dtype(e.dtype_name);
    size_t count = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) bad("shape has a non-integer or negative dimension");
      e.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
      // Every partial product stays below 2^63 / 8, so numel() and tensor_nbytes() cannot overflow
      // even when a later 0 makes the tensor empty ([2^62, 2, 0] was accepted before).
      if (d.get<uint64_t>() > (uint64_t{1} << 62) || __builtin_mul_overflow(count, d.get<uint64_t>(), &count) ||
          count > (uint64_t{1} << 60))
        bad("shape is too large");
    }
    for (const auto& o : v["data_offsets"])
      if (!o.is_number_unsigned()) bad("'data_offsets' holds a non-integer or negative offset");
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    if (e.begin > e.end)
      bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] are not ordered");
    if (e.end > buffer_len)
      bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
          "] lie outside the data buffer of " + std::to_string(buffer_len) + " bytes (file truncated?)");
    size_t elem = format_dtype_size(e.dtype_name);
    size_t expected = 0;
    if (elem && (__builtin_mul_overflow(count, elem, &expected) || expected != e.end - e.begin))
      bad("data_offsets span " + std::to_string(e.end - e.begin) + " bytes, but shape " + shape_str(e.shape) +
          " of " + e.dtype_name + " needs " + std::to_string(count * elem));
    auto [pos, inserted] = entries_.emplace(name, std::move(e));
    ranges.push_back({pos->second.begin, pos->second.end, &pos->first});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end && ranges[i].begin != ranges[i].end)
      throw ModelError(where + ": tensors '" + *ranges[i - 1].name + "' and '" + *ranges[i].name +
                       "' overlap in the data buffer");
  }
}

TensorView SafetensorsFile::tensor(const std::string& name) const {
  TensorView t = raw_tensor(name);
  if (!entries_.at(name).dtype)
    throw ModelError(path_.string() + ": tensor '" + name + "' has unsupported dtype " + t.dtype_name +
                     " (supported: F32, BF16, F16)");
  return t;
}

TensorView SafetensorsFile::raw_tensor(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw ModelError("tensor '" + name + "' not found in " + path_.string());
  const Entry& e = it->second;
  TensorView t;
  t.name = name;
  t.dtype = e.dtype.value_or(DType::F32);
  t.dtype_name = e.dtype_name;
  t.shape = e.shape;
  t.data = buffer_ + e.begin;
  t.nbytes = e.end - e.begin;
  t.file = shared_from_this();
  return t;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moe
