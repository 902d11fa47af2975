// unpack_tensor_add_rows, the client's combine straight from a reply's bytes: the sums equal unpack then
// add, in f32 and bf16, from a blob at an odd address; rows may repeat; empty shards add nothing; sizes
// and row indices are checked before anything is added.
#include <gtest/gtest.h>

#include <capnp/blob.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "runtime/wire/tensor_pack.h"
#include "runtime/wire/wire_error.h"

namespace moe {
namespace {

constexpr size_t kHidden = 7;  // odd: rows of bf16 start at odd multiples of 2 bytes

// `rows` x kHidden values packed in `dtype`, placed one byte past an aligned start (an odd address).
struct OddBlob {
  std::vector<kj::byte> storage;
  capnp::Data::Reader reader;
};
OddBlob odd_blob(const std::vector<float>& values, wire::DType dtype) {
  OddBlob b;
  const size_t bytes = packed_tensor_bytes(dtype, values.size());
  b.storage.resize(bytes + 1);
  pack_tensor(values, dtype, kj::arrayPtr(b.storage.data() + 1, bytes));
  b.reader = capnp::Data::Reader(b.storage.data() + 1, bytes);
  return b;
}

std::vector<float> pattern(size_t rows) {
  std::vector<float> v(rows * kHidden);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i % 13) * 0.25f - 1.5f;  // exact in bf16
  return v;
}

TEST(TensorAddRows, EqualsUnpackThenAddFromAnOddAddress) {
  for (wire::DType dtype : {wire::DType::F32, wire::DType::BF16}) {
    const std::vector<int32_t> rows = {3, 0, 3, 1};  // row 3 twice: both add
    std::vector<float> values = pattern(rows.size());
    OddBlob blob = odd_blob(values, dtype);
    ASSERT_NE(reinterpret_cast<uintptr_t>(blob.reader.begin()) % 2, 0u);
    std::vector<float> out(5 * kHidden);
    for (size_t i = 0; i < out.size(); ++i) out[i] = float(i);
    std::vector<float> expected = out;
    std::vector<float> unpacked = unpack_tensor(blob.reader, dtype, values.size(), "t");
    for (size_t i = 0; i < rows.size(); ++i)
      for (size_t h = 0; h < kHidden; ++h) expected[rows[i] * kHidden + h] += unpacked[i * kHidden + h];
    unpack_tensor_add_rows(blob.reader, dtype, rows, kHidden, out, "forwardReply.output");
    EXPECT_EQ(out, expected) << wire_dtype_name(dtype);
  }
}

TEST(TensorAddRows, AnEmptyShardAddsNothing) {
  for (wire::DType dtype : {wire::DType::F32, wire::DType::BF16}) {
    std::vector<float> out(3 * kHidden, 2.f);
    unpack_tensor_add_rows(capnp::Data::Reader(), dtype, {}, kHidden, out, "t");
    EXPECT_EQ(out, std::vector<float>(3 * kHidden, 2.f));
    std::vector<float> none;
    unpack_tensor_add_rows(capnp::Data::Reader(), dtype, {}, kHidden, none, "t");
  }
}

TEST(TensorAddRows, BadSizesAndRowsAreRefusedBeforeAdding) {
  const std::vector<int32_t> rows = {0, 1};
  std::vector<float> values = pattern(rows.size());
  OddBlob blob = odd_blob(values, wire::DType::BF16);
  std::vector<float> out(2 * kHidden, 1.f);
  try {
    unpack_tensor_add_rows(blob.reader, wire::DType::F32, rows, kHidden, out, "forwardReply.output");
    FAIL() << "added a blob of the wrong size";
  } catch (const WireError& e) {
    EXPECT_STREQ(e.what(), "forwardReply.output: blob of 28 bytes, expected 56 (2 rows x 7 x f32)");
  }
  const std::vector<int32_t> out_of_range = {0, 2};
  try {
    unpack_tensor_add_rows(blob.reader, wire::DType::BF16, out_of_range, kHidden, out, "forwardReply.output");
    FAIL() << "added into a row out of range";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "forwardReply.output: row 1 names output row 2, the output has 2 rows");
  }
  EXPECT_EQ(out, std::vector<float>(2 * kHidden, 1.f));  // row 0 was not added before the check failed
  std::vector<float> ragged(2 * kHidden + 1);
  EXPECT_THROW(unpack_tensor_add_rows(blob.reader, wire::DType::BF16, rows, kHidden, ragged, "t"), std::invalid_argument);
}

TEST(TensorPack, Bf16ToF32PackIsExactAtAnOddAddress) {
  // pack_tensor's bf16 -> f32 loop writes through an unaligned destination.
  std::vector<uint16_t> bf16 = {0x3fc0, 0xc000, 0x0000, 0x8000, 0x7f80, 0x0001};
  std::vector<kj::byte> storage(bf16.size() * 4 + 1);
  pack_tensor(bf16.data(), DType::BF16, bf16.size(), wire::DType::F32, kj::arrayPtr(storage.data() + 1, bf16.size() * 4));
  for (size_t i = 0; i < bf16.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, storage.data() + 1 + 4 * i, 4);
    EXPECT_EQ(bits, uint32_t{bf16[i]} << 16) << "element " << i;
  }
}

}  // namespace
}  // namespace moe
