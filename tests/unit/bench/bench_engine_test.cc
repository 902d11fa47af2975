// run_bench_engine on a tiny layer with tiny time bounds: it completes, prints one row per weight dtype
// and token count with figures in every measured column, says so when the PyTorch peer cannot run, and
// rejects bad options; median_ratio is the ABAB figure. Not a timing test (the peer itself runs in
// tests/peer/bench_engine_peer_test.py).
#include "cli/bench_engine.h"

#include <gtest/gtest.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe {
namespace {

BenchEngineOptions tiny() {
  BenchEngineOptions o;
  o.hidden = 40;
  o.intermediate = 72;
  o.experts = 4;
  o.top_k = 2;
  o.tokens = {1, 3, 40};
  o.threads = 2;
  o.min_seconds = 0.001;
  o.min_reps = 1;
  o.max_reps = 3;
  o.memcpy_bytes = 1 << 20;
  o.pairs = 2;
  return o;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Without its python the peer is said to be missing, never filled in: every peer cell is '-'.
TEST(BenchEngine, PrintsOneRowPerDtypeAndTokenCountAndSaysWhenThereIsNoPeer) {
  BenchEngineOptions o = tiny();
  o.peer_python = "/nonexistent/python";
  std::ostringstream out;
  ASSERT_EQ(run_bench_engine(o, out), 0);
  const std::string text = out.str();
  EXPECT_NE(text.find("hidden 40, intermediate 72, experts 4, top_k 2"), std::string::npos) << text;
  EXPECT_NE(text.find("peer: not measured: no python at /nonexistent/python"), std::string::npos) << text;
  EXPECT_NE(text.find("load average before"), std::string::npos) << text;
  EXPECT_EQ(text.find("issue #2"), std::string::npos) << "no figure copied from an issue:\n" << text;
  std::vector<std::vector<std::string>> rows;
  for (const std::string& line : lines_of(text)) {
    std::istringstream cells(line);
    std::vector<std::string> c;
    for (std::string w; cells >> w;) c.push_back(w);
    if (c.size() > 2 && (c[0] == "f32" || c[0] == "bf16")) rows.push_back(c);
  }
  ASSERT_EQ(rows.size(), 6u) << text;  // f32 and bf16 x T = 1, 3, 40
  for (size_t r = 0; r < rows.size(); ++r) {
    const auto& c = rows[r];
    const std::string row = c[0] + " T=" + c[1];
    EXPECT_EQ(c[0], r < 3 ? "f32" : "bf16") << row;
    EXPECT_GT(std::stod(c[2]), 0.0) << row;  // ours ms
    EXPECT_TRUE(c[3] == "1" || c[3] == "2") << row;  // ours threads
    EXPECT_GT(std::stod(c[4]), 0.0) << row;  // GFLOP/s
    EXPECT_EQ(c[5], "-") << row;             // peer ms
    EXPECT_EQ(c[6], "-") << row;             // peer threads
    EXPECT_EQ(c[7], "-") << row;             // peer/ours
    EXPECT_EQ(c[8], "-") << row;             // peer diff
    if (r < 3) {
      EXPECT_GT(std::stod(c[9]), 0.0) << row;  // blas f32 ms, f32 rows only
    } else {
      EXPECT_EQ(c[9], "-") << row;
    }
    EXPECT_GT(std::stod(c[11]), 0.0) << row;  // weights GB/s
  }
  EXPECT_NE(text.find("faster than peer: no peer"), std::string::npos) << text;
  EXPECT_NE(text.find("weights >= 80% memcpy"), std::string::npos) << text;
}

TEST(BenchEngine, MedianRatioIsTheMedianOfPerPairRatios) {
  EXPECT_DOUBLE_EQ(median_ratio({2, 9, 4}, {1, 3, 4}), 2.0);   // ratios 2, 3, 1
  EXPECT_DOUBLE_EQ(median_ratio({2, 9}, {1, 3}), 2.5);         // ratios 2, 3
  EXPECT_DOUBLE_EQ(median_ratio({10, 1, 10}, {1, 10, 1}), 10.0);  // not the ratio of the medians (1)
  EXPECT_THROW(median_ratio({1}, {1, 2}), std::invalid_argument);
  EXPECT_THROW(median_ratio({}, {}), std::invalid_argument);
}

TEST(BenchEngine, RejectsBadOptions) {
  std::ostringstream out;
  BenchEngineOptions o = tiny();
  o.top_k = 5;
  EXPECT_THROW(run_bench_engine(o, out), std::invalid_argument);
  o = tiny();
  o.tokens = {};
  EXPECT_THROW(run_bench_engine(o, out), std::invalid_argument);
  o = tiny();
  o.tokens = {0};
  EXPECT_THROW(run_bench_engine(o, out), std::invalid_argument);
  o = tiny();
  o.pairs = 0;
  EXPECT_THROW(run_bench_engine(o, out), std::invalid_argument);
  o = tiny();
  o.dtypes = {DType::F16};
  EXPECT_THROW(run_bench_engine(o, out), std::invalid_argument);
}

}  // namespace
}  // namespace moe
