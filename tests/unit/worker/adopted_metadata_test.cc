// A worker answers clients whose coordinator is away: getModel with the modelInfo it adopted from the
// coordinator, getPlacement with the last placement it committed (notReady before the first commit),
// never going back to an older epoch.
#include <gtest/gtest.h>

#include "runtime/client/client_placement.h"
#include "runtime/wire/envelope_util.h"
#include "tests/unit/worker/worker_harness.h"

namespace moe::test {
namespace {

Frame ask(WorkerHarness& h, bool model) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  if (model) envelope.setGetModel();
  else envelope.setGetPlacement();
  return h.call(h.client(), message);
}

TEST(WorkerAdoptedMetadata, AnswersGetModelAndTheLastCommittedPlacement) {
  WorkerHarness h;
  Frame before = ask(h, false);
  ASSERT_TRUE(before.envelope().isError());
  EXPECT_EQ(before.envelope().getError().getCode(), wire::ErrorCode::NOT_READY);

  Frame model = ask(h, true);
  ASSERT_TRUE(model.envelope().isModelInfo()) << message_kind_name(model.envelope());
  EXPECT_EQ(std::string(model.envelope().getModelInfo().getSource().cStr()), "synthetic:tiny:0");
  EXPECT_NE(std::string(model.envelope().getModelInfo().getSpecJson().cStr()).find("\"hidden_size\""), std::string::npos);

  h.place(1, {{0, 0}, {0, 1}});
  h.place(2, {{0, 2}});
  Frame placement = ask(h, false);
  ASSERT_TRUE(placement.envelope().isPlacement()) << message_kind_name(placement.envelope());
  ClientPlacement decoded(placement.envelope().getPlacement());
  EXPECT_EQ(decoded.epoch(), 2u);
  EXPECT_EQ(decoded.choose_worker(0, 2, 0), FakeCoordinator::kWorkerId);
  EXPECT_EQ(decoded.choose_worker(0, 0, 0), 99);
}

}  // namespace
}  // namespace moe::test
