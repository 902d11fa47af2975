// SafetensorsFile / write_safetensors: round trips, dtype conversion, and every malformed-file case.
#include "runtime/model/safetensors_file.h"

#include <cmath>
#include <cstring>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"
#include "tests/unit/model/test_util.h"

namespace moe {
namespace {

using test::expect_error;
using test::raw_safetensors;
using test::TempDir;
using test::write_file;

std::span<const std::byte> bytes_of(const std::vector<float>& v) {
  return {reinterpret_cast<const std::byte*>(v.data()), v.size() * 4};
}

TEST(SafetensorsTest, WriteThenReadRoundTrip) {
  TempDir dir;
  std::vector<float> a = {1.f, -2.5f, 3.25f, 0.f, 1e-3f, 7.f};
  std::vector<float> b = {0.5f, -0.25f};
  std::vector<std::byte> b16 = encode_floats(b, DType::BF16);
  std::vector<std::byte> h16 = encode_floats(b, DType::F16);
  std::vector<TensorToWrite> tensors = {
      {"a", DType::F32, {2, 3}, bytes_of(a)},
      {"b.bf16", DType::BF16, {2}, b16},
      {"b.f16", DType::F16, {1, 2}, h16},
  };
  write_safetensors(dir / "x.safetensors", tensors, {{"note", "hi"}});

  std::string raw = test::read_file(dir / "x.safetensors");
  uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  EXPECT_EQ(header_len % 8, 0u) << "header must be padded to 8 bytes";
  EXPECT_EQ(raw.size(), 8 + header_len + 24 + 4 + 4);

  auto f = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_EQ(f->names(), (std::vector<std::string>{"a", "b.bf16", "b.f16"}));
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "hi");
  TensorView ta = f->tensor("a");
  EXPECT_EQ(ta.dtype, DType::F32);
  EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ta.nbytes, 24u);
  EXPECT_EQ(std::memcmp(ta.data, a.data(), 24), 0);
  EXPECT_EQ(ta.file, f);
  Matrix m = read_matrix(*f, "a", 2, 3);
  EXPECT_EQ(m.rows, 2);
  EXPECT_EQ(m.cols, 3);
  EXPECT_EQ(m.data, a);
  EXPECT_EQ(tensor_to_floats(f->tensor("b.bf16")), b);  // exactly representable
  EXPECT_EQ(tensor_to_floats(f->tensor("b.f16")), b);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors.tmp"));
}

TEST(SafetensorsTest, ViewOutlivesTheFileHandle) {
  TempDir dir;
  std::vector<float> a = {4.f, 5.f};
  std::vector<TensorToWrite> tensors = {{"a", DType::F32, {2}, bytes_of(a)}};
  write_safetensors(dir / "x.safetensors", tensors);
  TensorView view = SafetensorsFile::open(dir / "x.safetensors")->tensor("a");
  EXPECT_EQ(tensor_to_floats(view), a);  // the view's shared_ptr keeps the mapping alive
}

TEST(SafetensorsTest, ReadsTestdataCases) {
  auto f = SafetensorsFile::open(test::testdata("mixtral_f32") / "cases.safetensors");
  Matrix x = read_matrix(*f, "model.layers.0.mlp.batch.input", 37, 64);
  EXPECT_EQ(x.data.size(), 37u * 64u);
  double sum = 0;
  for (float v : x.data) sum += std::fabs(v);
  EXPECT_GT(sum, 0.0);
}

TEST(SafetensorsTest, Bf16AndF16ConversionAreExactAndRoundToNearestEven) {
  // bf16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.f + std::ldexp(1.f, -8))), 1.f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.f + 3 * std::ldexp(1.f, -8))), 1.f + std::ldexp(1.f, -6));
  // f16: every finite half survives f16 -> f32 -> f16 unchanged.
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue;  // NaN payloads
    ASSERT_EQ(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  EXPECT_EQ(f16_to_f32(f32_to_f16(65519.f)), 65504.f);
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(65520.f))));
  EXPECT_EQ(f16_to_f32(f32_to_f16(1.f + std::ldexp(1.f, -11))), 1.f);  // tie to even
  EXPECT_EQ(f16_to_f32(f32_to_f16(std::ldexp(1.f, -24))), std::ldexp(1.f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(f32_to_f16(std::ldexp(1.f, -25))), 0.f);                   // tie to even: 0
  EXPECT_EQ(f16_to_f32(f32_to_f16(std::ldexp(1.5f, -25))), std::ldexp(1.f, -24));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
}

TEST(SafetensorsTest, MatrixShapeMismatchNamesBothShapes) {
  TempDir dir;
  std::vector<float> a(6, 1.f);
  std::vector<TensorToWrite> tensors = {{"w", DType::F32, {2, 3}, bytes_of(a)}};
  write_safetensors(dir / "x.safetensors", tensors);
  auto f = SafetensorsFile::open(dir / "x.safetensors");
  expect_error([&] { read_matrix(*f, "w", 3, 2); }, {"tensor 'w' has shape [2, 3], expected [3, 2]"});
  expect_error([&] { read_matrix(*f, "w", -1, 4); }, {"expected [?, 4]"});
  expect_error([&] { f->tensor("nope"); }, {"tensor 'nope' not found in", "x.safetensors"});
}

TEST(SafetensorsTest, WriterChecksByteCounts) {
  TempDir dir;
  std::vector<float> a(5, 1.f);
  std::vector<TensorToWrite> tensors = {{"w", DType::F32, {2, 3}, bytes_of(a)}};
  expect_error([&] { write_safetensors(dir / "x.safetensors", tensors); }, {"'w'", "20 bytes", "24"});
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors.tmp"));
}

// Every malformed file is refused with one line naming the file.
class MalformedFileTest : public ::testing::Test {
 protected:
  void expect_open_error(const std::string& bytes, std::initializer_list<std::string> parts) {
    const auto path = dir_ / "bad.safetensors";
    write_file(path, bytes);
    std::vector<std::string> all(parts);
    all.push_back(path.string());
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << "opened a malformed file; expected: " << *parts.begin();
    } catch (const ModelError& e) {
      const std::string msg = e.what();
      for (const std::string& p : all) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\nmissing: " << p;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  TempDir dir_;
};

const std::string kGood = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

TEST_F(MalformedFileTest, ReferenceFileOpens) {
  write_file(dir_ / "ok.safetensors", raw_safetensors(kGood, std::string(8, '\0')));
  EXPECT_EQ(SafetensorsFile::open(dir_ / "ok.safetensors")->tensor("t").shape, (std::vector<int64_t>{2}));
}

TEST_F(MalformedFileTest, TruncatedBeforeHeaderLength) { expect_open_error("abc", {"truncated", "3 bytes"}); }

TEST_F(MalformedFileTest, EmptyFile) { expect_open_error("", {"truncated", "0 bytes"}); }

TEST_F(MalformedFileTest, HeaderLengthLargerThanFile) {
  expect_open_error(raw_safetensors(kGood, std::string(8, '\0'), 100000), {"header length 100000", "exceeds the file size"});
}

TEST_F(MalformedFileTest, CorruptJsonHeader) {
  expect_open_error(raw_safetensors("{\"t\": {\"dtype\": \n", ""), {"corrupt safetensors header"});
  expect_open_error(raw_safetensors("[1, 2]", ""), {"not a JSON object"});
}

TEST_F(MalformedFileTest, DataOffsetsOutsideTheFile) {
  // Same header, data cut short: the tensor's end (8) lies beyond the 4 bytes present.
  expect_open_error(raw_safetensors(kGood, std::string(4, '\0')), {"'t'", "[0, 8]", "outside the data buffer of 4 bytes"});
}

TEST_F(MalformedFileTest, DataOffsetsNotOrdered) {
  expect_open_error(raw_safetensors(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", std::string(8, '\0')),
                    {"'t'", "not ordered"});
}

TEST_F(MalformedFileTest, SizeDoesNotMatchShape) {
  expect_open_error(raw_safetensors(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
                    {"'t'", "8 bytes", "[3]", "needs 12"});
}

TEST_F(MalformedFileTest, OverlappingTensors) {
  expect_open_error(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    std::string(8, '\0')),
                    {"overlap"});
}

TEST_F(MalformedFileTest, MissingFieldsAndBadShapes) {
  expect_open_error(raw_safetensors(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')), {"'t'", "dtype"});
  expect_open_error(raw_safetensors(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                    {"'t'", "negative"});
  expect_open_error(raw_safetensors(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", std::string(8, '\0')),
                    {"'t'", "data_offsets"});
}

// Found by fuzz_safetensors: [2^62, 2, 0] is empty, so its size matched, but numel() overflowed int64
// (undefined) and tensor_nbytes() threw on the opened file's own tensor.
TEST_F(MalformedFileTest, HugeDimensionsOfAnEmptyTensor) {
  expect_open_error(raw_safetensors(R"({"t":{"dtype":"F32","shape":[4611686018427387904,2,0],"data_offsets":[0,0]}})", ""),
                    {"'t'", "shape is too large"});
}

TEST_F(MalformedFileTest, MissingFile) { expect_error([&] { SafetensorsFile::open(dir_ / "none.safetensors"); }, {"none.safetensors", "cannot open"}); }

// Found by fuzz_safetensors: an empty tensor converts to f32 through memcpy into an empty vector, whose
// data() is null (undefined even for 0 bytes; UBSan, ops/run-sanitizers.sh, reports it).
TEST(SafetensorsTest, EmptyTensorReadsAsNoValues) {
  TempDir dir;
  write_file(dir / "e.safetensors", raw_safetensors(R"({"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]}})", ""));
  auto f = SafetensorsFile::open(dir / "e.safetensors");
  EXPECT_TRUE(tensor_to_floats(f->tensor("e")).empty());
  Matrix m = tensor_to_matrix(f->tensor("e"));
  EXPECT_EQ(m.rows, 0);
  EXPECT_EQ(m.cols, 4);
}

// Found by fuzz_safetensors in CI: safetensors does not require a tensor's offset to be a multiple of its
// element size, so a BF16 or F16 tensor may start at an odd address. Reading it through a uint16_t* was
// undefined (UBSan: "load of misaligned address"); every reader now loads element by element through
// memcpy (load_unaligned in runtime/core/dtype.h) and gets the right values.
TEST(SafetensorsTest, TensorsAtOddOffsetsReadExactly) {
  TempDir dir;
  // bf16 1.0 = 0x3F80, -2.0 = 0xC000; f16 1.0 = 0x3C00, 0.5 = 0x3800; f32 3.0 = 0x40400000 (little-endian).
  const std::string data = std::string("\x01", 1) + std::string("\x80\x3F\x00\xC0", 4) +
                           std::string("\x00\x3C\x00\x38", 4) + std::string("\x00\x00\x40\x40", 4);
  std::string header = R"({"pad":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                       R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[1,5]},)"
                       R"("h":{"dtype":"F16","shape":[1,2],"data_offsets":[5,9]},)"
                       R"("f":{"dtype":"F32","shape":[1],"data_offsets":[9,13]}})";
  if (header.size() % 2 != 0) header += ' ';  // the buffer starts at 8 + header length: keep it even
  write_file(dir / "odd.safetensors", raw_safetensors(header, data));
  auto f = SafetensorsFile::open(dir / "odd.safetensors");
  ASSERT_NE(reinterpret_cast<uintptr_t>(f->tensor("b").data) % 2, 0u) << "the test needs a misaligned tensor";
  EXPECT_EQ(tensor_to_floats(f->tensor("b")), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(tensor_to_matrix(f->tensor("h")).data, (std::vector<float>{1.0f, 0.5f}));
  EXPECT_EQ(tensor_to_floats(f->tensor("f")), (std::vector<float>{3.0f}));
}

TEST(SafetensorsTest, UnsupportedDtypeIsRefusedWhenAsked) {
  TempDir dir;
  write_file(dir / "x.safetensors",
             raw_safetensors(R"({"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
                             R"("w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                             std::string(16, '\0')));
  auto f = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_TRUE(f->contains("ids"));
  EXPECT_EQ(f->tensor("w").shape, (std::vector<int64_t>{2}));
  expect_error([&] { f->tensor("ids"); },
               {"tensor 'ids' has unsupported dtype I64 (supported: F32, BF16, F16)", "x.safetensors"});
}

}  // namespace
}  // namespace moe
