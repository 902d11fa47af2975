// Weight streaming between workers (--no-shared-storage): a worker serves fetchExpert chunks of the
// experts it holds (expertNotHosted otherwise), and a prepare that names peers loads gained experts from
// them. The gaining worker's own model source is a different seed of the same synthetic model, so its
// outputs tell where each expert's weights came from.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/unit/worker/worker_harness.h"
#include "worker/expert_fetch.h"

namespace moe::test {
namespace {

const char* kPeerModel = "synthetic:tiny:0";
const char* kOwnModel = "synthetic:tiny:1";  // same spec, other weights

WorkerOptions streaming() {
  WorkerOptions options;
  options.no_shared_storage = true;
  options.fetch_timeout_ms = 5000;
  return options;
}

Frame fetch(WorkerHarness& h, ExpertKey key, wire::ExpertMatrix matrix, uint64_t offset, uint32_t max_bytes) {
  capnp::MallocMessageBuilder message;
  auto request = message.initRoot<wire::Envelope>().initFetchExpert();
  request.initExpert().setLayer(key.layer);
  request.getExpert().setExpert(key.expert);
  request.setMatrix(matrix);
  request.setOffset(offset);
  request.setMaxBytes(max_bytes);
  return h.call(*h.control, message);
}

size_t matrix_bytes(const WeightMatrixView& m) { return static_cast<size_t>(m.rows * m.cols) * dtype_size(m.dtype); }

bool same_matrix(const WeightMatrixView& a, const WeightMatrixView& b) {
  return a.dtype == b.dtype && a.rows == b.rows && a.cols == b.cols &&
         std::memcmp(a.data, b.data, matrix_bytes(a)) == 0;
}

// Layer 0 output of `h` for tokens routed to `expert` only, against `reference`.
double expert_error(WorkerHarness& h, Reference& reference, int32_t expert, uint64_t epoch) {
  ForwardCall call;
  call.epoch = epoch;
  call.x = random_hidden(3, h.spec().hidden_size, 11 + static_cast<uint32_t>(expert));
  call.assignments = {{0, expert, 1.f}, {1, expert, 0.5f}, {2, expert, 0.25f}};
  return max_relative_error(forward_output(h.forward(call)), reference.compute(0, call.x, call.assignments));
}

TEST(WorkerStreaming, FetchServesChunksOfHeldExpertsOnly) {
  WorkerHarness h(kPeerModel, streaming());
  h.place(1, {{0, 0}, {0, 1}});
  auto source = open_layer_source(ModelRef::parse(kPeerModel));
  ExpertWeights want = source->expert_weights(0, 1);
  const WeightMatrixView& down = want.view.down;

  Frame whole = fetch(h, {0, 1}, wire::ExpertMatrix::DOWN, 0, 1u << 30);
  ASSERT_EQ(whole.envelope().which(), wire::Envelope::EXPERT_CHUNK) << message_kind_name(whole.envelope());
  auto chunk = whole.envelope().getExpertChunk();
  EXPECT_EQ(chunk.getRows(), down.rows);
  EXPECT_EQ(chunk.getCols(), down.cols);
  EXPECT_EQ(from_wire_dtype(chunk.getDtype()), down.dtype);
  ASSERT_EQ(chunk.getData().size(), matrix_bytes(down));
  EXPECT_EQ(std::memcmp(chunk.getData().begin(), down.data, matrix_bytes(down)), 0);

  Frame part = fetch(h, {0, 1}, wire::ExpertMatrix::DOWN, 8, 16);
  ASSERT_EQ(part.envelope().which(), wire::Envelope::EXPERT_CHUNK);
  EXPECT_EQ(part.envelope().getExpertChunk().getOffset(), 8u);
  ASSERT_EQ(part.envelope().getExpertChunk().getData().size(), 16u);
  EXPECT_EQ(std::memcmp(part.envelope().getExpertChunk().getData().begin(), static_cast<const char*>(down.data) + 8, 16), 0);

  uint64_t current = 0;
  EXPECT_EQ(error_code(fetch(h, {0, 5}, wire::ExpertMatrix::GATE, 0, 64), &current), wire::ErrorCode::EXPERT_NOT_HOSTED);
  EXPECT_EQ(current, 1u);
  EXPECT_EQ(error_code(fetch(h, {7, 0}, wire::ExpertMatrix::GATE, 0, 64)), wire::ErrorCode::UNKNOWN_LAYER);
  EXPECT_EQ(error_code(fetch(h, {0, 1}, wire::ExpertMatrix::UP, matrix_bytes(want.view.up), 64)),
            wire::ErrorCode::BAD_REQUEST);
  EXPECT_EQ(error_code(fetch(h, {0, 1}, wire::ExpertMatrix::UP, 0, 0)), wire::ErrorCode::BAD_REQUEST);

  // After release the expert is gone: nothing left to stream.
  h.place(2, {{0, 0}});
  ASSERT_EQ(h.send_release(2).envelope().which(), wire::Envelope::ACK);
  EXPECT_EQ(error_code(fetch(h, {0, 1}, wire::ExpertMatrix::GATE, 0, 64)), wire::ErrorCode::EXPERT_NOT_HOSTED);
}

TEST(WorkerStreaming, AWorkerWithoutTheFlagKeepsNothingToStream) {
  WorkerHarness h(kPeerModel);
  h.place(1, {{0, 2}});
  Frame reply = fetch(h, {0, 2}, wire::ExpertMatrix::GATE, 0, 64);
  EXPECT_EQ(error_code(reply), wire::ErrorCode::EXPERT_NOT_HOSTED);
  EXPECT_NE(error_message(reply).find("--no-shared-storage"), std::string::npos) << error_message(reply);
}

TEST(WorkerStreaming, FetchExpertsReassemblesSmallChunks) {
  WorkerHarness h(kPeerModel, streaming());
  h.place(1, {{0, 3}, {1, 4}});
  auto source = open_layer_source(ModelRef::parse(kPeerModel));
  auto peer = Connection::connect(h.pool.context(), h.worker->address(), 2000ms);
  ExpertFetchOptions options;
  options.chunk_bytes = 100;  // many chunks per matrix, a few in flight
  options.max_in_flight = 3;
  auto got = fetch_experts(*peer, {{0, 3}, {1, 4}}, h.spec(), options);
  ASSERT_EQ(got.size(), 2u);
  for (ExpertKey key : {ExpertKey{0, 3}, ExpertKey{1, 4}}) {
    ExpertWeights want = source->expert_weights(key.layer, key.expert);
    EXPECT_TRUE(same_matrix(got.at(key).view.gate, want.view.gate));
    EXPECT_TRUE(same_matrix(got.at(key).view.up, want.view.up));
    EXPECT_TRUE(same_matrix(got.at(key).view.down, want.view.down));
  }
  try {
    fetch_experts(*peer, {{0, 6}}, h.spec(), options);
    ADD_FAILURE() << "fetching an expert the peer does not hold succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("expert 6 of layer 0"), std::string::npos) << e.what();
  }
  peer->close();
}

// A worker started with --cluster-token streams weights only to peers that send it (workers send their
// own token with every fetchExpert).
TEST(WorkerStreaming, ATokenGuardsTheWeights) {
  WorkerOptions options = streaming();
  options.cluster_token = "secret";
  options.transport.allow_cleartext_token = true;  // loopback test without TLS
  WorkerHarness h(kPeerModel, options);
  h.place(1, {{0, 3}});
  Frame refused = fetch(h, {0, 3}, wire::ExpertMatrix::GATE, 0, 64);
  EXPECT_EQ(error_code(refused), wire::ErrorCode::UNAUTHORIZED);
  EXPECT_NE(error_message(refused).find("fetchExpert without a cluster token"), std::string::npos)
      << error_message(refused);

  auto peer = Connection::connect(h.pool.context(), h.worker->address(), 2000ms);
  ExpertFetchOptions fetch_options;
  fetch_options.cluster_token = "wrong";
  try {
    fetch_experts(*peer, {{0, 3}}, h.spec(), fetch_options);
    ADD_FAILURE() << "a wrong cluster token streamed weights";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("wrong cluster token"), std::string::npos) << e.what();
  }
  fetch_options.cluster_token = "secret";
  auto got = fetch_experts(*peer, {{0, 3}}, h.spec(), fetch_options);
  auto source = open_layer_source(ModelRef::parse(kPeerModel));
  EXPECT_TRUE(same_matrix(got.at({0, 3}).view.down, source->expert_weights(0, 3).view.down));
  peer->close();
}

TEST(WorkerStreaming, PrepareStreamsGainedExpertsFromTheNamedPeers) {
  WorkerHarness holder(kPeerModel, streaming());
  holder.place(1, {{0, 1}, {0, 2}, {0, 4}});
  WorkerHarness gainer(kOwnModel, streaming());
  Reference peer_weights(kPeerModel), own_weights(kOwnModel);

  // (0,1): from the holder; (0,2): a dead address first, then the holder; (0,3): no source, from the
  // model source; (0,6): the holder lacks it, so the model source too.
  Frame ack = gainer.send_prepare(2, {{0, 1}, {0, 2}, {0, 3}, {0, 6}},
                                   {{{0, 1}, {holder.worker->address()}},
                                    {{0, 2}, {"127.0.0.1:1", holder.worker->address()}},
                                    {{0, 6}, {holder.worker->address()}}});
  ASSERT_EQ(ack.envelope().which(), wire::Envelope::PREPARE_ACK) << message_kind_name(ack.envelope());
  EXPECT_EQ(gainer.worker->hosted(), (std::set<ExpertKey>{{0, 1}, {0, 2}, {0, 3}, {0, 6}}));

  EXPECT_LT(expert_error(gainer, peer_weights, 1, 2), 1e-5);
  EXPECT_LT(expert_error(gainer, peer_weights, 2, 2), 1e-5);
  EXPECT_GT(expert_error(gainer, own_weights, 1, 2), 1e-3);  // the seeds really differ
  EXPECT_LT(expert_error(gainer, own_weights, 3, 2), 1e-5);
  EXPECT_LT(expert_error(gainer, own_weights, 6, 2), 1e-5);

  // A streamed expert can be streamed on: the gainer keeps the peer's weights.
  auto source = open_layer_source(ModelRef::parse(kPeerModel));
  Frame chunk = fetch(gainer, {0, 1}, wire::ExpertMatrix::GATE, 0, 1u << 30);
  ASSERT_EQ(chunk.envelope().which(), wire::Envelope::EXPERT_CHUNK);
  const WeightMatrixView& gate = source->expert_weights(0, 1).view.gate;
  ASSERT_EQ(chunk.envelope().getExpertChunk().getData().size(), matrix_bytes(gate));
}

TEST(WorkerStreaming, WithoutTheFlagAPrepareIgnoresSources) {
  WorkerHarness holder(kPeerModel, streaming());
  holder.place(1, {{0, 1}});
  WorkerHarness gainer(kOwnModel);
  Reference own_weights(kOwnModel);
  Frame ack = gainer.send_prepare(2, {{0, 1}}, {{{0, 1}, {holder.worker->address()}}});
  ASSERT_EQ(ack.envelope().which(), wire::Envelope::PREPARE_ACK);
  EXPECT_LT(expert_error(gainer, own_weights, 1, 2), 1e-5);
}

}  // namespace
}  // namespace moe::test
