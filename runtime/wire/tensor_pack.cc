// Tensor packing to and from wire Data blobs (see tensor_pack.h).
#include "runtime/wire/tensor_pack.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "runtime/wire/wire_error.h"

namespace moe {

static_assert(std::endian::native == std::endian::little, "wire tensors are little-endian");

namespace {

// n bf16 values at `src` (any alignment) to f32 at `dst` (any alignment unless dst_aligned).
void bf16_rows_to_f32(const std::byte* src, size_t n, float* dst, bool dst_aligned) {
  if (dst_aligned) {
    for (size_t i = 0; i < n; ++i) {
      uint16_t packed;
      std::memcpy(&packed, src + 2 * i, 2);
      dst[i] = bf16_to_f32(packed);
    }
    return;
  }
  auto* out = reinterpret_cast<std::byte*>(dst);
  for (size_t i = 0; i < n; ++i) {
    uint16_t packed;
    std::memcpy(&packed, src + 2 * i, 2);
    const uint32_t bits = uint32_t{packed} << 16;
    std::memcpy(out + 4 * i, &bits, 4);
  }
}

// out[h] += value h of a row of `hidden` values of `dtype` at `src` (any alignment).
void add_row(const std::byte* src, wire::DType dtype, size_t hidden, float* out) {
  if (dtype == wire::DType::F32) {
    for (size_t h = 0; h < hidden; ++h) {
      float value;
      std::memcpy(&value, src + 4 * h, 4);
      out[h] += value;
    }
    return;
  }
  for (size_t h = 0; h < hidden; ++h) {
    uint16_t packed;
    std::memcpy(&packed, src + 2 * h, 2);
    out[h] += bf16_to_f32(packed);
  }
}

}  // namespace

DType from_wire_dtype(wire::DType dtype) {
  switch (dtype) {
    case wire::DType::F32: return DType::F32;
    case wire::DType::BF16: return DType::BF16;
  }
  throw WireError("unknown wire dtype " + std::to_string(static_cast<unsigned>(dtype)) + " (known: f32, bf16)");
}

wire::DType to_wire_dtype(DType dtype) {
  switch (dtype) {
    case DType::F32: return wire::DType::F32;
    case DType::BF16: return wire::DType::BF16;
    case DType::F16: break;
  }
  throw WireError(std::string("dtype ") + dtype_name(dtype) + " cannot travel on the wire (use F32 or BF16)");
}

const char* wire_dtype_name(wire::DType dtype) {
  switch (dtype) {
    case wire::DType::F32: return "f32";
    case wire::DType::BF16: return "bf16";
  }
  return "unknown";
}

size_t wire_dtype_size(wire::DType dtype) { return dtype_size(from_wire_dtype(dtype)); }

size_t packed_tensor_bytes(wire::DType dtype, size_t elements) { return wire_dtype_size(dtype) * elements; }

void pack_tensor(const void* src, DType src_type, size_t elements, wire::DType dtype, kj::ArrayPtr<kj::byte> dst) {
  size_t expected = packed_tensor_bytes(dtype, elements);
  if (dst.size() != expected) {
    throw WireError("pack_tensor: destination of " + std::to_string(dst.size()) + " bytes, expected " +
                    std::to_string(expected) + " (" + std::to_string(elements) + " x " + wire_dtype_name(dtype) + ")");
  }
  DType dst_type = from_wire_dtype(dtype);
  if (src_type == dst_type) {
    if (expected > 0) std::memcpy(dst.begin(), src, expected);  // empty: either pointer may be null
    return;
  }
  // Element by element, with memcpy: neither side needs to be aligned. The common pairs get their own
  // branch-free loops (the compiler vectorises them); others go through f32.
  const auto* in = static_cast<const std::byte*>(src);
  auto* out = dst.begin();
  if (src_type == DType::F32 && dst_type == DType::BF16) {
    for (size_t i = 0; i < elements; ++i) {
      float value;
      std::memcpy(&value, in + 4 * i, 4);
      const uint16_t packed = f32_to_bf16(value);
      std::memcpy(out + 2 * i, &packed, 2);
    }
    return;
  }
  if (src_type == DType::BF16 && dst_type == DType::F32) {
    bf16_rows_to_f32(in, elements, reinterpret_cast<float*>(out), /*dst_aligned=*/false);
    return;
  }
  for (size_t i = 0; i < elements; ++i) {
    float value;
    if (src_type == DType::F32) {
      std::memcpy(&value, in + 4 * i, 4);
    } else {
      uint16_t half;
      std::memcpy(&half, in + 2 * i, 2);
      value = src_type == DType::BF16 ? bf16_to_f32(half) : f16_to_f32(half);
    }
    if (dst_type == DType::F32) {
      std::memcpy(out + 4 * i, &value, 4);
    } else {
      uint16_t packed = f32_to_bf16(value);
      std::memcpy(out + 2 * i, &packed, 2);
    }
  }
}

void pack_tensor(std::span<const float> src, wire::DType dtype, kj::ArrayPtr<kj::byte> dst) {
  pack_tensor(src.data(), DType::F32, src.size(), dtype, dst);
}

void unpack_tensor(capnp::Data::Reader blob, wire::DType dtype, std::span<float> dst, const std::string& what) {
  size_t expected = packed_tensor_bytes(dtype, dst.size());
  if (blob.size() != expected) {
    throw WireError(what + ": blob of " + std::to_string(blob.size()) + " bytes, expected " +
                    std::to_string(expected) + " (" + std::to_string(dst.size()) + " x " + wire_dtype_name(dtype) + ")");
  }
  if (dtype == wire::DType::F32) {
    if (expected > 0) std::memcpy(dst.data(), blob.begin(), expected);  // an empty span's data() may be null
    return;
  }
  bf16_rows_to_f32(reinterpret_cast<const std::byte*>(blob.begin()), dst.size(), dst.data(), /*dst_aligned=*/true);
}

void unpack_tensor_add_rows(capnp::Data::Reader blob, wire::DType dtype, std::span<const int32_t> rows, size_t hidden,
                            std::span<float> out, const std::string& what) {
  const size_t row_bytes = packed_tensor_bytes(dtype, hidden);
  const size_t expected = row_bytes * rows.size();
  if (blob.size() != expected) {
    throw WireError(what + ": blob of " + std::to_string(blob.size()) + " bytes, expected " +
                    std::to_string(expected) + " (" + std::to_string(rows.size()) + " rows x " +
                    std::to_string(hidden) + " x " + wire_dtype_name(dtype) + ")");
  }
  const size_t out_rows = hidden == 0 ? 0 : out.size() / hidden;
  if (out_rows * hidden != out.size()) {
    throw std::invalid_argument(what + ": output of " + std::to_string(out.size()) + " values is not whole rows of " +
                                std::to_string(hidden));
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || static_cast<size_t>(rows[i]) >= out_rows) {
      throw std::invalid_argument(what + ": row " + std::to_string(i) + " names output row " +
                                  std::to_string(rows[i]) + ", the output has " + std::to_string(out_rows) + " rows");
    }
  }
  const auto* src = reinterpret_cast<const std::byte*>(blob.begin());
  for (size_t i = 0; i < rows.size(); ++i) {
    add_row(src + i * row_bytes, dtype, hidden, out.data() + static_cast<size_t>(rows[i]) * hidden);
  }
}

std::vector<float> unpack_tensor(capnp::Data::Reader blob, wire::DType dtype, size_t elements, const std::string& what) {
  std::vector<float> out(elements);
  unpack_tensor(blob, dtype, std::span<float>(out), what);
  return out;
}

}  // namespace moe
