// run_bench_engine on a tiny layer with tiny time bounds: it completes, prints one row per token count
// with figures in every measured column, and rejects bad options. Not a timing test.
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
  return o;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(BenchEngine, PrintsOneRowPerTokenCount) {
  std::ostringstream out;
  ASSERT_EQ(run_bench_engine(tiny(), out), 0);
  const std::string text = out.str();
  EXPECT_NE(text.find("hidden 40, intermediate 72, experts 4, top_k 2"), std::string::npos) << text;
  EXPECT_NE(text.find("peer ms (PyTorch, issue #2)"), std::string::npos) << text;
  EXPECT_NE(text.find("memcpy"), std::string::npos) << text;
  std::vector<std::string> rows;
  for (const std::string& line : lines_of(text)) {
    std::istringstream cells(line);
    std::string first;
    cells >> first;
    if (!first.empty() && first.find_first_not_of("0123456789") == std::string::npos) rows.push_back(line);
  }
  ASSERT_EQ(rows.size(), 3u) << text;
  for (const std::string& row : rows) {
    std::istringstream cells(row);
    std::string t, ours_ms, ours_gflops, sgemm_ms, sgemm_gflops, ratio, peer;
    cells >> t >> ours_ms >> ours_gflops >> sgemm_ms >> sgemm_gflops >> ratio >> peer;
    EXPECT_GT(std::stod(ours_ms), 0.0) << row;
    EXPECT_GT(std::stod(sgemm_gflops), 0.0) << row;
    EXPECT_EQ(ratio.back(), '%') << row;
    EXPECT_EQ(peer, "-") << "peer figures belong to the default shape only: " << row;
  }
  // Decode row: the weight bandwidth beside memcpy's.
  std::istringstream decode(rows[0]);
  std::vector<std::string> cells;
  for (std::string c; decode >> c;) cells.push_back(c);
  ASSERT_EQ(cells.size(), 10u) << rows[0];
  EXPECT_GT(std::stod(cells[8]), 0.0) << rows[0];
  EXPECT_GT(std::stod(cells[9]), 0.0) << rows[0];
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
}

}  // namespace
}  // namespace moe
