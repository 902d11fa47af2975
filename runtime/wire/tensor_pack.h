// Tensors on the wire: one Data blob, row-major, little-endian, f32 or bf16 (wire::DType). Packing
// converts from any in-memory dtype (runtime/core/dtype.h) and checks sizes; unpacking checks that a blob
// has exactly the size its message announces before touching it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <capnp/blob.h>

#include "runtime/core/dtype.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

DType from_wire_dtype(wire::DType dtype);  // throws WireError on a value this build does not know
wire::DType to_wire_dtype(DType dtype);    // throws WireError for F16 (not a wire dtype)
const char* wire_dtype_name(wire::DType dtype);
size_t wire_dtype_size(wire::DType dtype);  // throws WireError on unknown values

// Bytes of `elements` values of `dtype`.
size_t packed_tensor_bytes(wire::DType dtype, size_t elements);

// Writes `elements` values of type `src_type` at `src` into `dst` as `dtype` (f32 -> bf16 rounds to
// nearest even). `dst.size()` must be packed_tensor_bytes(dtype, elements); throws WireError otherwise.
void pack_tensor(const void* src, DType src_type, size_t elements, wire::DType dtype, kj::ArrayPtr<kj::byte> dst);
void pack_tensor(std::span<const float> src, wire::DType dtype, kj::ArrayPtr<kj::byte> dst);

// Reads `blob` (dtype `dtype`) into `dst` as f32. `what` names the field in errors, e.g.
// "forwardRequest.tokens"; throws WireError when blob.size() != packed_tensor_bytes(dtype, dst.size()).
void unpack_tensor(capnp::Data::Reader blob, wire::DType dtype, std::span<float> dst, const std::string& what);
std::vector<float> unpack_tensor(capnp::Data::Reader blob, wire::DType dtype, size_t elements, const std::string& what);

// Adds `blob` ([rows.size(), hidden] values of `dtype`, at any alignment) into `out` ([out rows, hidden] f32)
// without unpacking it first: out[rows[i], :] += row i. Throws WireError when blob.size() differs from
// rows.size() x hidden values, and std::invalid_argument when `out` is not whole rows or a row index is
// out of range (checked before anything is added). `what` names the field in errors.
void unpack_tensor_add_rows(capnp::Data::Reader blob, wire::DType dtype, std::span<const int32_t> rows, size_t hidden,
                            std::span<float> out, const std::string& what);

}  // namespace moe
