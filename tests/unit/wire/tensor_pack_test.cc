// Tensor packing: exact f32 round trips, bf16 round-to-nearest-even, conversions from bf16/f16 sources,
// and size checks that name the field.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include <cmath>
#include <cstring>

#include "runtime/wire/framing.h"
#include "runtime/wire/tensor_pack.h"
#include "runtime/wire/wire_error.h"

namespace moe {
namespace {

TEST(TensorPack, F32RoundTripIsExact) {
  std::vector<float> values = {0.f, -0.f, 1.f, -3.25f, 1e-30f, 3.4e38f, std::nanf(""), 0.1f};
  std::vector<kj::byte> blob(packed_tensor_bytes(wire::DType::F32, values.size()));
  pack_tensor(values, wire::DType::F32, kj::arrayPtr(blob.data(), blob.size()));
  auto back = unpack_tensor(capnp::Data::Reader(blob.data(), blob.size()), wire::DType::F32, values.size(), "t");
  ASSERT_EQ(back.size(), values.size());
  EXPECT_EQ(std::memcmp(back.data(), values.data(), values.size() * 4), 0);
}

// Found by fuzz_frame_stream (a forwardRequest of zero tokens): an empty span's data() is null, and
// memcpy from or to null is undefined even for 0 bytes (UBSan, ops/run-sanitizers.sh, reports it).
TEST(TensorPack, EmptyTensorsPackAndUnpack) {
  for (wire::DType dtype : {wire::DType::F32, wire::DType::BF16}) {
    std::vector<float> none;
    pack_tensor(none, dtype, kj::ArrayPtr<kj::byte>());
    auto back = unpack_tensor(capnp::Data::Reader(), dtype, 0, "t");
    EXPECT_TRUE(back.empty()) << wire_dtype_name(dtype);
  }
}

TEST(TensorPack, Bf16RoundsToNearestEven) {
  const float ulp = std::ldexp(1.f, -7);  // bf16 spacing at 1.0
  std::vector<float> values = {1.5f, -2.f, 0.15625f,
                               1.f + ulp / 2,        // halfway, even neighbour is 1.0
                               1.f + 3 * ulp / 2,    // halfway, even neighbour is 1 + 2 ulp
                               1.f + ulp * 0.75f};   // nearer to 1 + ulp
  std::vector<float> expected = {1.5f, -2.f, 0.15625f, 1.f, 1.f + 2 * ulp, 1.f + ulp};
  std::vector<kj::byte> blob(packed_tensor_bytes(wire::DType::BF16, values.size()));
  ASSERT_EQ(blob.size(), 12u);
  pack_tensor(values, wire::DType::BF16, kj::arrayPtr(blob.data(), blob.size()));
  auto back = unpack_tensor(capnp::Data::Reader(blob.data(), blob.size()), wire::DType::BF16, values.size(), "t");
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(back[i], expected[i]) << "element " << i;
}

TEST(TensorPack, ConvertsFromBf16AndF16Sources) {
  std::vector<uint16_t> bf16 = {0x3fc0, 0xc000};  // 1.5, -2
  std::vector<kj::byte> as_f32(8);
  pack_tensor(bf16.data(), DType::BF16, 2, wire::DType::F32, kj::arrayPtr(as_f32.data(), as_f32.size()));
  auto back = unpack_tensor(capnp::Data::Reader(as_f32.data(), 8), wire::DType::F32, 2, "t");
  EXPECT_EQ(back[0], 1.5f);
  EXPECT_EQ(back[1], -2.f);

  std::vector<kj::byte> same(4);
  pack_tensor(bf16.data(), DType::BF16, 2, wire::DType::BF16, kj::arrayPtr(same.data(), same.size()));
  EXPECT_EQ(std::memcmp(same.data(), bf16.data(), 4), 0);

  std::vector<uint16_t> f16 = {0x3e00, 0xbc00};  // 1.5, -1 in IEEE half
  std::vector<kj::byte> f16_as_bf16(4);
  pack_tensor(f16.data(), DType::F16, 2, wire::DType::BF16, kj::arrayPtr(f16_as_bf16.data(), 4));
  back = unpack_tensor(capnp::Data::Reader(f16_as_bf16.data(), 4), wire::DType::BF16, 2, "t");
  EXPECT_EQ(back[0], 1.5f);
  EXPECT_EQ(back[1], -1.f);
}

TEST(TensorPack, SizeMismatchNamesTheField) {
  std::vector<kj::byte> blob(100);
  try {
    unpack_tensor(capnp::Data::Reader(blob.data(), blob.size()), wire::DType::BF16, 64, "forwardRequest.tokens");
    FAIL() << "unpacked a blob of the wrong size";
  } catch (const WireError& e) {
    EXPECT_STREQ(e.what(), "forwardRequest.tokens: blob of 100 bytes, expected 128 (64 x bf16)");
  }
  std::vector<float> values(10);
  EXPECT_THROW(pack_tensor(values, wire::DType::F32, kj::arrayPtr(blob.data(), blob.size())), WireError);
}

TEST(TensorPack, DtypeMapping) {
  EXPECT_EQ(from_wire_dtype(wire::DType::BF16), DType::BF16);
  EXPECT_EQ(to_wire_dtype(DType::F32), wire::DType::F32);
  EXPECT_THROW(to_wire_dtype(DType::F16), WireError);
  EXPECT_THROW(from_wire_dtype(static_cast<wire::DType>(7)), WireError);
  EXPECT_EQ(wire_dtype_size(wire::DType::BF16), 2u);
}

TEST(TensorPack, ThroughAForwardReplyFrame) {
  const uint32_t tokens = 3, hidden = 5;
  std::vector<float> values(tokens * hidden);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) * 0.5f - 2.f;  // all exact in bf16
  capnp::MallocMessageBuilder message;
  auto reply = message.initRoot<wire::Envelope>().initForwardReply();
  reply.setNumTokens(tokens);
  reply.setHidden(hidden);
  reply.setDtype(wire::DType::BF16);
  pack_tensor(values, wire::DType::BF16, reply.initOutput(packed_tensor_bytes(wire::DType::BF16, values.size())));
  auto frame = encode_frame(message);
  Frame decoded = decode_frame(frame_bytes(frame));
  auto got = decoded.envelope().getForwardReply();
  EXPECT_EQ(unpack_tensor(got.getOutput(), got.getDtype(), size_t{got.getNumTokens()} * got.getHidden(), "output"), values);
}

}  // namespace
}  // namespace moe
