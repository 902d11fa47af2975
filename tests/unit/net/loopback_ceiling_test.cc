// The loopback ceiling helper: it really moves the bytes (round trips counted, time measured) and
// refuses empty runs.
#include <gtest/gtest.h>

#include "runtime/net/loopback_ceiling.h"
#include "runtime/net/net_error.h"

namespace moe {
namespace {

TEST(LoopbackCeiling, MeasuresRoundTrips) {
  auto result = measure_loopback_ceiling(1 << 20, 20);
  EXPECT_EQ(result.payload_bytes, size_t{1} << 20);
  EXPECT_EQ(result.round_trips, 20);
  EXPECT_GT(result.seconds, 0.0);
  EXPECT_GT(result.bytes_per_second(), 1e6);  // loopback moves far more than 1 MB/s
  EXPECT_NEAR(result.mean_round_trip_seconds() * 20, result.seconds, 1e-12);
}

TEST(LoopbackCeiling, SmallPayloads) {
  auto result = measure_loopback_ceiling(1, 50);
  EXPECT_EQ(result.round_trips, 50);
  EXPECT_GT(result.bytes_per_second(), 0.0);
}

TEST(LoopbackCeiling, RejectsEmptyRuns) {
  EXPECT_THROW(measure_loopback_ceiling(0, 5), NetError);
  EXPECT_THROW(measure_loopback_ceiling(10, 0), NetError);
}

}  // namespace
}  // namespace moe
