// EpochState alone: which epochs are served through prepare / commit / grace / release, and which
// experts a release unloads.
#include <gtest/gtest.h>

#include "worker/epoch_state.h"
#include "runtime/wire/service_error.h"

namespace moe {
namespace {

wire::ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ServiceError& e) {
    return e.code();
  }
  ADD_FAILURE() << "no ServiceError thrown";
  return wire::ErrorCode::INTERNAL;
}

TEST(EpochState, FreshServesNothingInParticularAndAcceptsAnyEpoch) {
  EpochState state;
  EXPECT_EQ(state.current(), 0u);
  EXPECT_NO_THROW(state.check_request_epoch(0));
  EXPECT_NO_THROW(state.check_request_epoch(5));
}

TEST(EpochState, FirstCommitHasNoGrace) {
  EpochState state;
  state.commit(4, {{0, 1}});
  EXPECT_EQ(state.current(), 4u);
  EXPECT_EQ(state.oldest_served(), 4u);
  EXPECT_FALSE(state.in_grace());
  EXPECT_EQ(code_of([&] { state.check_request_epoch(3); }), wire::ErrorCode::STALE_EPOCH);
}

TEST(EpochState, CommitStartsGraceAndReleaseEndsIt) {
  EpochState state;
  state.commit(1, {{0, 0}, {0, 1}});
  state.prepare(2, {{0, 2}});
  state.commit(2, {{0, 1}, {0, 2}});
  EXPECT_TRUE(state.in_grace());
  EXPECT_NO_THROW(state.check_request_epoch(1));
  std::set<ExpertKey> unload = state.release(2, {{0, 0}, {0, 1}, {0, 2}});
  EXPECT_EQ(unload, (std::set<ExpertKey>{{0, 0}}));
  EXPECT_FALSE(state.in_grace());
  EXPECT_EQ(code_of([&] { state.check_request_epoch(1); }), wire::ErrorCode::STALE_EPOCH);
  EXPECT_NO_THROW(state.check_request_epoch(3));  // a commit this worker has not seen yet
}

TEST(EpochState, ReleaseKeepsPreparedAndUnreleasedEpochs) {
  EpochState state;
  state.commit(1, {{0, 0}});
  state.commit(2, {{0, 1}});
  state.commit(3, {{0, 2}});
  state.prepare(4, {{1, 0}});
  // Releasing epoch 2 (late) keeps what epochs 2 and 3 and the prepared epoch 4 need.
  std::set<ExpertKey> unload = state.release(2, {{0, 0}, {0, 1}, {0, 2}, {1, 0}, {1, 1}});
  EXPECT_EQ(unload, (std::set<ExpertKey>{{0, 0}, {1, 1}}));
  EXPECT_EQ(state.oldest_served(), 2u);
  EXPECT_EQ(state.needed(), (std::set<ExpertKey>{{0, 1}, {0, 2}, {1, 0}}));
}

TEST(EpochState, ReleaseDroppingPreparesUnloadsWhatOnlyTheyNeeded) {
  EpochState state;
  state.commit(1, {{0, 0}});
  state.commit(2, {{0, 1}});
  state.prepare(3, {{0, 1}, {1, 0}});  // a change that failed on another worker: the coordinator abandons it
  std::set<ExpertKey> unload = state.release(2, {{0, 0}, {0, 1}, {1, 0}}, /*drop_prepared=*/true);
  EXPECT_EQ(unload, (std::set<ExpertKey>{{0, 0}, {1, 0}}));
  EXPECT_EQ(state.needed(), (std::set<ExpertKey>{{0, 1}}));
  EXPECT_EQ(state.current(), 2u);
  EXPECT_NO_THROW(state.prepare(3, {{1, 1}}));  // the next change may reuse the epoch number
  EXPECT_EQ(state.needed(), (std::set<ExpertKey>{{0, 1}, {1, 1}}));
}

TEST(EpochState, OutOfOrderMessagesAreRefused) {
  EpochState state;
  state.commit(5, {});
  EXPECT_EQ(code_of([&] { state.commit(4, {}); }), wire::ErrorCode::STALE_EPOCH);
  EXPECT_EQ(code_of([&] { state.prepare(4, {}); }), wire::ErrorCode::STALE_EPOCH);
  EXPECT_EQ(code_of([&] { state.release(6, {}); }), wire::ErrorCode::BAD_REQUEST);
  EXPECT_NO_THROW(state.commit(5, {{0, 0}}));  // the same commit again
  EXPECT_EQ(state.needed(), (std::set<ExpertKey>{{0, 0}}));
}

}  // namespace
}  // namespace moe
