// Frames: one Envelope per frame, in Cap'n Proto's standard stream framing (segment table, then the
// segments). Encoding is capnp::messageToFlatArray. Decoding is an incremental parser over a byte
// stream that checks the segment table against FrameLimits BEFORE allocating anything, reads the frame
// into a word-aligned buffer, and validates the whole message once (bounds, nesting, traversal limit,
// and every field against the schema), so that a handler reading known fields never meets a bad
// pointer. Never readMessageUnchecked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <variant>
#include <vector>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/array.h>

#include "runtime/wire/moe.capnp.h"
#include "runtime/wire/wire_error.h"

namespace moe {

struct FrameLimits {
  size_t max_message_bytes = 64u << 20;  // segment table + segments
  uint32_t max_segments = 512;
  int nesting_limit = 16;
  // Words a handler's reader may traverse: room to read the message a few times over, while an
  // amplification attack (many pointers to one blob, or a list of a million zero-sized structs in a few
  // bytes) stays bounded.
  static constexpr uint64_t kTraversalFactor = 16;
  // Validation reads the message twice (schema-less, then by schema) on a reader of its own, with an
  // eighth of the handlers' budget. A whole read of a frame it accepts costs at most kValidationFactor
  // message sizes (its words, plus what zero-sized list elements are charged), so the handlers' fresh
  // reader can read all of it at least kTraversalFactor / kValidationFactor = 8 times.
  static constexpr uint64_t kValidationFactor = 2;

  uint64_t traversal_limit_words() const { return max_message_bytes / sizeof(capnp::word) * kTraversalFactor; }
  uint64_t validation_traversal_limit_words() const {
    return max_message_bytes / sizeof(capnp::word) * kValidationFactor;
  }
  capnp::ReaderOptions reader_options() const;
};

// One received, validated frame. Owns its bytes; movable, not copyable. Reading it from one thread at a
// time is safe (the reader's traversal counter is not atomic).
class Frame {
 public:
  Frame() = default;
  Frame(Frame&&) noexcept = default;
  Frame& operator=(Frame&&) noexcept = default;

  bool empty() const { return reader_ == nullptr; }
  wire::Envelope::Reader envelope() const;  // throws WireError on an empty Frame
  size_t size_bytes() const { return words_.size() * sizeof(capnp::word); }

  // Validates `words` (one whole frame, segment table included) and takes ownership.
  // Throws FrameError(Malformed) when the message is not a valid Envelope under `limits`.
  static Frame from_words(kj::Array<capnp::word> words, const FrameLimits& limits);

 private:
  // Declaration order matters: reader_ points into words_ and is destroyed first.
  kj::Array<capnp::word> words_;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
};

// Serialises a message into one frame. The second form throws FrameError(TooLarge / TooManySegments)
// when the peer would reject it, before copying anything.
kj::Array<capnp::word> encode_frame(capnp::MessageBuilder& message);
kj::Array<capnp::word> encode_frame(capnp::MessageBuilder& message, const FrameLimits& limits);

// A frame to write without flattening it: the stream framing's segment table, then the message's own
// segments, in that order, as one gathered write (no copy of the segments). Owns the message until it is
// written; movable.
struct SegmentedFrame {
  kj::Array<capnp::word> table;                    // segment count and sizes, padded to a word
  std::unique_ptr<capnp::MessageBuilder> message;  // its getSegmentsForOutput() follow the table
  size_t bytes = 0;                                // table + segments
};

// The segment table of `message`, checked against `limits` like encode_frame (throws FrameError
// TooLarge / TooManySegments before anything is kept). The frame's bytes are those of encode_frame.
SegmentedFrame encode_segmented_frame(std::unique_ptr<capnp::MessageBuilder> message, const FrameLimits& limits);

inline std::span<const std::byte> frame_bytes(const kj::Array<capnp::word>& frame) {
  return std::as_bytes(std::span<const capnp::word>(frame.begin(), frame.size()));
}

// Incremental decoder of a frame stream. Feed it bytes as they arrive; complete frames and frame errors
// queue up in stream order. A fatal error (too many segments, too large) stops the decoder: the stream
// cannot be resynchronised. A malformed frame is reported and the stream goes on.
class FrameDecoder {
 public:
  explicit FrameDecoder(FrameLimits limits = {});

  const FrameLimits& limits() const { return limits_; }

  // Consumes all of `bytes` (or stops at a fatal error).
  void feed(std::span<const std::byte> bytes);

  // Zero-copy path for big bodies: where the next body bytes go (empty when not inside a body), and
  // how many bytes were written there.
  std::span<std::byte> body_window();
  void commit_body(size_t n);

  bool has_output() const { return !output_.empty(); }
  // The next frame in stream order; throws its FrameError instead if that is what came next.
  // Throws std::logic_error when there is no output.
  Frame pop();

  bool failed() const { return state_ == State::Failed; }
  // Bytes of an incomplete frame are buffered.
  bool mid_frame() const;
  // Call at end of stream: throws FrameError(Truncated) when the stream ended inside a frame.
  void finish() const;

 private:
  enum class State { FirstWord, Table, Body, Failed };

  size_t feed_header(const std::byte* data, size_t n);
  void on_first_word();
  void on_table();
  void on_body_complete();
  void fail(FrameError error);

  FrameLimits limits_;
  State state_ = State::FirstWord;
  std::vector<std::byte> table_;   // segment table bytes gathered so far
  size_t table_bytes_ = 8;         // full table size once the segment count is known
  kj::Array<capnp::word> words_;   // the frame being read (table + segments)
  size_t body_filled_ = 0;         // bytes of words_ filled, table included
  std::deque<std::variant<Frame, FrameError>> output_;
};

// Decodes exactly one frame from `bytes`; throws FrameError when the bytes are not exactly one valid
// frame (truncated, trailing bytes, over the limits, malformed).
Frame decode_frame(std::span<const std::byte> bytes, const FrameLimits& limits = {});

}  // namespace moe
