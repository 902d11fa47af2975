# The one wire schema of moe-cluster: every frame on every connection (client, worker, coordinator,
# moectl) is one Envelope. A request and its reply carry the same requestId; replies may come out of
# order. Conventions:
#   - Experts are named (layer, expert). Routed experts are 0..E-1; the shared expert, when the model
#     has one, is expert E (ModelSpec::shared_expert_id()).
#   - Tensors travel as one Data blob, row-major, little-endian, in the dtype the message names.
#   - Epochs start at 1; 0 means "none" (a worker that serves nothing yet).
#   - New fields are appended with the next ordinal; nothing is ever renumbered or removed.
@0xe0403e2001638f54;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("moe::wire");

struct Envelope {
  requestId @0 :UInt64;
  union {
    error @1 :Error;                    # the reply to any request that failed

    # Membership (worker -> coordinator).
    registerWorker @2 :RegisterWorker;
    registerReply @3 :RegisterReply;
    heartbeat @4 :Heartbeat;
    heartbeatReply @5 :HeartbeatReply;

    # Model metadata and placement (client/worker -> coordinator).
    getModel @6 :Void;
    modelInfo @7 :ModelInfo;
    getPlacement @8 :Void;
    placement @9 :Placement;

    # Placement change protocol (coordinator -> worker): prepare, commit, grace, release.
    prepare @10 :Prepare;
    prepareAck @11 :PrepareAck;
    commit @12 :Commit;
    release @13 :Release;
    ack @14 :Ack;                       # the reply to commit, release and drain

    # The data path (client -> worker).
    forwardRequest @15 :ForwardRequest;
    forwardReply @16 :ForwardReply;

    # Control (moectl -> coordinator).
    drain @17 :Drain;
    rebalance @18 :Rebalance;
    rebalanceReply @19 :RebalanceReply;
    status @20 :Void;
    statusReply @21 :StatusReply;

    # Weight streaming (worker -> worker, --no-shared-storage): a gainer fetches an expert it prepares
    # from a worker that holds it, chunk by chunk.
    fetchExpert @22 :FetchExpert;
    expertChunk @23 :ExpertChunk;

    # Live weight updates (moectl -> coordinator): a new checkpoint of the same shapes rolled out through
    # the change protocol (prepare loads it beside the old one, commit switches, release drops the old).
    updateWeights @26 :UpdateWeights;
    updateWeightsReply @27 :UpdateWeightsReply;

    # Data-path transports (client -> worker, over TCP): where else the worker takes forward requests.
    getTransports @28 :Void;
    transports @29 :Transports;
  }

  # Authorisation (docs/architecture.md, "Who may say what"). Every request carries the cluster token
  # when the cluster has one; each daemon checks it in one place before looking at the request.
  # Replies carry neither field.
  clusterToken @24 :Text;
  # prepare, commit and release (coordinator -> worker): the control key the worker sent with its
  # registration; a worker acts on epoch-moving requests only when it comes back.
  controlKey @25 :Data;
}

enum ErrorCode {
  internal @0;           # a bug or an unexpected failure on the replying side
  staleEpoch @1;         # the request was planned against an epoch the replier no longer serves
  expertNotHosted @2;    # the worker does not host an expert the request names
  badRequest @3;         # malformed frame, wrong sizes, inconsistent lists
  overloaded @4;         # queue full: retry later or elsewhere
  unauthorized @5;       # a request without the right cluster token, or control without the worker's key
  deadlineExceeded @6;   # the replier gave up on the request's deadline
  unknownLayer @7;       # the layer is out of range or not an MoE layer
  notReady @8;           # no placement yet, experts still loading, coordinator starting
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;      # one line: what was wrong, with which values
  currentEpoch @2 :UInt64;  # the epoch the replier serves (0 if none): lets a client refresh
  retryable @3 :Bool;    # the same request may succeed later or elsewhere (notReady, overloaded, ...)
}

struct ExpertRef {
  layer @0 :Int32;
  expert @1 :Int32;
}

struct Capacity {
  memoryBytes @0 :UInt64;   # memory the worker may fill with expert weights
  expertSlots @1 :UInt32;   # how many expert copies it may host
}

struct RegisterWorker {
  name @0 :Text;            # human-readable, e.g. the host name
  address @1 :Text;         # "host:port" where the worker listens for forward requests
  backend @2 :Text;         # "cpu", "cuda", ...
  capacity @3 :Capacity;
  clusterToken @4 :Text;   # unused: Envelope.clusterToken
  servingEpoch @5 :UInt64;  # a worker re-registering after a coordinator restart keeps serving this
  hosted @6 :List(ExpertRef);  # ... with these experts loaded
  previousId @7 :UInt32;    # the id a coordinator gave this worker before (0: none): a worker that
                            # registers again with the same name and address keeps its id
  controlKey @8 :Data;      # 16 random bytes the worker drew at start: prepare, commit and release must
                            # bring them back in Envelope.controlKey (only the coordinator it registered
                            # with knows them)
  weightVersion @9 :UInt64; # the weight version its current epoch serves (0: none yet)
  weightSource @10 :Text;   # where that version's weights are: a coordinator restarted without its state
                            # file adopts the version from the workers
}

struct Transports {
  ucx @0 :Text;              # "host:port" of the worker's UCX listener (moe-worker --transport ucx); empty:
                             # the worker takes forward requests over TCP only
}

struct RegisterReply {
  workerId @0 :UInt32;
  leaseMs @1 :UInt32;        # the worker is dead if no heartbeat comes within this
  heartbeatMs @2 :UInt32;    # how often to send heartbeats
  currentEpoch @3 :UInt64;
}

struct ExpertLoad {
  layer @0 :Int32;
  expert @1 :Int32;
  tokens @2 :UInt64;         # tokens this worker computed for the expert within the window
}

struct Heartbeat {
  workerId @0 :UInt32;
  epoch @1 :UInt64;          # the epoch the worker serves
  windowMs @2 :UInt32;       # the window the token counts cover
  load @3 :List(ExpertLoad);
  memoryUsedBytes @4 :UInt64;
  weightVersion @5 :UInt64;  # the weight version the worker's current epoch serves
}

struct HeartbeatReply {
  leaseMs @0 :UInt32;
  currentEpoch @1 :UInt64;
  reregister @2 :Bool;       # the coordinator does not know this worker (it restarted): register again
  drained @3 :Bool;          # moectl drain moved every expert off this worker and that epoch is released:
                             # it may exit (0)
}

struct RouterWeights {
  layer @0 :Int32;
  numExperts @1 :UInt32;
  hidden @2 :UInt32;
  weight @3 :Data;           # f32 [numExperts x hidden]
  scoreBias @4 :Data;        # deepseek_v3 e_score_correction_bias, f32 [numExperts]; empty otherwise
  sharedExpertGate @5 :Data; # qwen2_moe shared_expert_gate, f32 [hidden]; empty otherwise
}

struct ModelInfo {
  specJson @0 :Text;         # the ModelSpec as HF-style config JSON (model_spec_to_config)
  routers @1 :List(RouterWeights);  # one per MoE layer
  name @2 :Text;             # the model's name or path, for display
  source @3 :Text;           # where workers load expert weights: "hf:DIR" (a path every node can read)
                             # or "synthetic:PRESET:SEED" (see runtime/model/layer_source_factory.h)
  deterministic @4 :Bool;    # the coordinator runs with --deterministic: clients route each token alone
                             # and send ForwardRequest.deterministic (README, "Deterministic mode")
  weightVersion @5 :UInt64;  # the weight version these routers (and `source`) belong to; starts at 1
  layerVersions @6 :List(LayerVersion);  # a layer-by-layer update-weights: the layers whose router (and
                             # experts) are of another version than weightVersion; empty otherwise
}

struct LayerVersion {        # one MoE layer served in another weight version than the whole (update-weights
  layer @0 :Int32;           # rolled out layer by layer when the workers' memory cannot hold two versions)
  version @1 :UInt64;
}

enum WorkerState {
  joining @0;                # registered, no experts yet
  active @1;
  draining @2;               # its experts are being moved away
  dead @3;                   # lease expired
}

struct WorkerInfo {
  id @0 :UInt32;
  address @1 :Text;          # "host:port"
  state @2 :WorkerState;
}

struct Replica {
  workerId @0 :UInt32;
  share @1 :Float32;         # the fraction of the expert's tokens this replica should take
}

struct Assignment {
  layer @0 :Int32;
  expert @1 :Int32;
  replicas @2 :List(Replica);
}

struct Placement {
  epoch @0 :UInt64;
  workers @1 :List(WorkerInfo);
  assignments @2 :List(Assignment);
  weightVersion @3 :UInt64;  # the weight version this epoch serves (0 from an older coordinator: 1)
  layerVersions @4 :List(LayerVersion);  # layers this epoch serves in another version (a layer-by-layer
                             # update-weights under way: the layers done so far); every other layer is in
                             # weightVersion
}

struct Prepare {
  epoch @0 :UInt64;          # the epoch being prepared
  load @1 :List(ExpertRef);  # experts the worker gains in that epoch
  sources @2 :List(ExpertSource);  # --no-shared-storage: where to stream gained experts from; an expert
                                   # not listed loads from the model source
  clusterToken @3 :Text;     # unused: Envelope.clusterToken
  weightVersion @4 :UInt64;  # the weight version `load` is loaded in (0: the worker's current one)
  weightSource @5 :Text;     # where that version's weights are (a ModelRef string, as ModelInfo.source)
  layerVersions @6 :List(LayerVersion);  # an ordinary change while a layer-by-layer update-weights is under
                             # way: the layers served in another version than weightVersion (their experts
                             # load in it)
  layerSource @7 :Text;      # where that version's weights are
}

struct ExpertSource {
  expert @0 :ExpertRef;
  addresses @1 :List(Text);  # "host:port" of workers holding it in the current epoch, tried in order
}

struct PrepareAck {
  epoch @0 :UInt64;
  loaded @1 :List(ExpertRef);
  memoryUsedBytes @2 :UInt64;
}

struct Commit {
  placement @0 :Placement;   # the full placement of the new epoch
  clusterToken @1 :Text;     # unused: Envelope.clusterToken
  weightSource @2 :Text;     # where placement.weightVersion's weights are (for experts loaded late)
  layerSource @3 :Text;      # where the weights of placement.layerVersions' version are ("" when none)
}

struct Release {
  epoch @0 :UInt64;          # unload every expert not assigned to this worker in this epoch
  clusterToken @1 :Text;     # unused: Envelope.clusterToken
  dropPrepared @2 :Bool;     # also forget every prepared epoch and unload what only they needed (a change
                             # that failed, e.g. an update-weights a worker could not load)
}

struct Ack {
  epoch @0 :UInt64;          # the epoch the replier serves after handling the request
}

enum DType {
  f32 @0;
  bf16 @1;
}

struct ForwardRequest {
  epoch @0 :UInt64;          # the placement epoch the client planned against
  layer @1 :Int32;
  dtype @2 :DType;
  numTokens @3 :UInt32;      # rows of `tokens`
  hidden @4 :UInt32;
  tokens @5 :Data;           # [numTokens x hidden] in dtype
  # One entry per (token, expert) pair routed to this worker; parallel lists of equal length.
  tokenIndex @6 :List(Int32);   # row of `tokens`
  expertId @7 :List(Int32);
  weight @8 :List(Float32);     # the routing weight of that pair
  deadlineMs @9 :UInt32;        # how long the client waits; 0 = unspecified
  clusterToken @10 :Text;       # unused: Envelope.clusterToken
  deterministic @11 :Bool;      # reply with one row per (token, expert) pair instead of per-token sums:
                                # ForwardReply.output is [pairs x hidden], row i = weight[i] * expert(token)
                                # computed by per-row invariant kernels, and ForwardReply.numTokens = pairs
  weightVersion @12 :UInt64;    # compute with this weight version (the one the client routed with);
                                # a worker that does not hold it answers staleEpoch. 0: its current one
}

struct ForwardReply {
  numTokens @0 :UInt32;
  hidden @1 :UInt32;
  dtype @2 :DType;
  output @3 :Data;           # [numTokens x hidden]: per token, sum over its experts of weight * expert(x)
                             # (a deterministic request: [pairs x hidden], one row per pair, see there)
  computeMicros @4 :UInt64;  # time the worker spent computing, for latency breakdowns
  weightVersion @5 :UInt64;  # the weight version every expert of this reply was computed with
}

struct Drain {
  workerId @0 :UInt32;
  clusterToken @1 :Text;     # unused: Envelope.clusterToken
}

struct Rebalance {
  clusterToken @0 :Text;      # unused: Envelope.clusterToken
  dryRun @1 :Bool;           # plan only: report what would move
}

struct RebalanceReply {
  epoch @0 :UInt64;          # the new epoch (the current one on a dry run or when nothing moved)
  expertsMoved @1 :UInt32;   # expert copies loaded somewhere new
  imbalanceBefore @2 :Float32;  # max worker load / mean worker load
  imbalanceAfter @3 :Float32;
}

struct WorkerStatus {
  info @0 :WorkerInfo;
  name @1 :Text;
  backend @2 :Text;
  capacity @3 :Capacity;
  hosted @4 :List(ExpertRef);
  load @5 :List(ExpertLoad);    # the last heartbeat's window
  leaseRemainingMs @6 :UInt32;
  weightVersion @7 :UInt64;     # the weight version the worker serves (its last heartbeat)
}

struct LayerBalance {
  layer @0 :Int32;
  imbalance @1 :Float32;        # max worker load / mean worker load over the last window
}

struct StatusReply {
  epoch @0 :UInt64;
  workers @1 :List(WorkerStatus);
  balance @2 :List(LayerBalance);
  modelName @3 :Text;
  weightVersion @4 :UInt64;     # the weight version the committed epoch serves
  weightSource @5 :Text;        # where that version's weights are
  weightUpdate @6 :Text;        # the update-weights being carried out ("" when none)
  layersUpdated @7 :UInt32;     # a layer-by-layer update: MoE layers already on `layersVersion`
  layersTotal @8 :UInt32;       # MoE layers of the model (0: no layer-by-layer update under way)
  layersVersion @9 :UInt64;     # the version those layers serve
  layersSource @10 :Text;       # its checkpoint
  deterministic @11 :Bool;      # the coordinator runs with --deterministic (README, "Deterministic mode")
}

enum ExpertMatrix {
  gate @0;                   # [intermediate x hidden]
  up @1;                     # [intermediate x hidden]
  down @2;                   # [hidden x intermediate]
}

struct FetchExpert {
  expert @0 :ExpertRef;
  matrix @1 :ExpertMatrix;
  offset @2 :UInt64;         # first byte of the matrix wanted
  maxBytes @3 :UInt32;       # at most this many bytes (the replier may send fewer, never more)
  clusterToken @4 :Text;     # unused: Envelope.clusterToken
  weightVersion @5 :UInt64;  # the weight version wanted (0: the replier's current one)
}

struct ExpertChunk {         # the reply to fetchExpert; expertNotHosted when the replier holds no copy
  expert @0 :ExpertRef;
  matrix @1 :ExpertMatrix;
  dtype @2 :DType;           # the dtype the replier holds the matrix in (the checkpoint's; f16 as f32)
  rows @3 :UInt32;
  cols @4 :UInt32;
  offset @5 :UInt64;
  data @6 :Data;             # bytes [offset, offset + size) of the row-major matrix
}

struct UpdateWeights {       # moectl update-weights: answered once the new version is committed (or refused)
  model @0 :Text;            # the new HF checkpoint folder (every node must read it, or with
                             # --no-shared-storage the coordinator and the workers' streaming source)
}

struct UpdateWeightsReply {
  weightVersion @0 :UInt64;  # the version now served
  epoch @1 :UInt64;          # the epoch that switched to it
  previousVersion @2 :UInt64;
}
