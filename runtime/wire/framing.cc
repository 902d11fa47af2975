// Frame encoding and the incremental, limit-checking frame decoder (see framing.h).
//
// Stream framing: u32 (segment count - 1), u32 size in words of each segment, padding to 8 bytes,
// then the segments back to back. All little-endian.
#include "runtime/wire/framing.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include <capnp/dynamic.h>
#include <kj/exception.h>

#include "runtime/wire/schema_check.h"

namespace moe {

static_assert(std::endian::native == std::endian::little, "the wire format is read as little-endian");

namespace {

constexpr size_t kWordBytes = sizeof(capnp::word);

// Bytes of a segment table announcing `segments` segments.
size_t table_bytes_for(uint64_t segments) {
  uint64_t bytes = 4 * (1 + segments);
  return static_cast<size_t>((bytes + 7) / 8 * 8);
}

uint32_t read_u32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Cap'n Proto's descriptions quote the offending bytes, NUL included: keep the message one readable line.
std::string printable(kj::StringPtr text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\0') {
      out += "\\0";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string too_large_message(uint64_t bytes, size_t limit) {
  return "frame of " + std::to_string(bytes) + " bytes exceeds the limit of " + std::to_string(limit) +
         " bytes";
}

std::string too_many_segments_message(uint64_t segments, uint32_t limit) {
  return "segment count " + std::to_string(segments) + " exceeds " + std::to_string(limit);
}

}  // namespace

capnp::ReaderOptions FrameLimits::reader_options() const {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = traversal_limit_words();
  options.nestingLimit = nesting_limit;
  return options;
}

// ---------------------------------------------------------------------------------------------- Frame

wire::Envelope::Reader Frame::envelope() const {
  if (!reader_) throw WireError("Frame::envelope() called on an empty frame");
  return reader_->getRoot<wire::Envelope>();
}

Frame Frame::from_words(kj::Array<capnp::word> words, const FrameLimits& limits) {
  Frame frame;
  frame.words_ = kj::mv(words);
  try {
    {
      // Validation spends its own, smaller traversal budget, so that what it reads is not taken from
      // the handlers' (a reader's traversal counter only goes down).
      auto options = limits.reader_options();
      options.traversalLimitInWords = limits.validation_traversal_limit_words();
      capnp::FlatArrayMessageReader validator(frame.words_.asPtr(), options);
      auto root = validator.getRoot<wire::Envelope>();
      // Every pointer once, schema-less: bounds, nesting and the traversal limit, even in fields this
      // build does not know.
      root.totalSize();
      // Every field the schema knows: pointer kinds and list element types a handler will rely on.
      check_against_schema(capnp::toDynamic(root));
    }
    frame.reader_ = std::make_unique<capnp::FlatArrayMessageReader>(frame.words_.asPtr(), limits.reader_options());
  } catch (const kj::Exception& e) {
    std::optional<uint64_t> request_id;
    try {
      // A fresh reader: the root's requestId may still be readable when something deeper was bad.
      capnp::FlatArrayMessageReader reader(frame.words_.asPtr(), limits.reader_options());
      request_id = reader.getRoot<wire::Envelope>().getRequestId();
    } catch (const kj::Exception&) {
    }
    throw FrameError(FrameError::Kind::Malformed,
                     "malformed frame of " + std::to_string(frame.size_bytes()) +
                         " bytes: " + printable(e.getDescription()),
                     request_id);
  }
  return frame;
}

// ------------------------------------------------------------------------------------------- encoding

kj::Array<capnp::word> encode_frame(capnp::MessageBuilder& message) {
  return capnp::messageToFlatArray(message);
}

kj::Array<capnp::word> encode_frame(capnp::MessageBuilder& message, const FrameLimits& limits) {
  auto segments = message.getSegmentsForOutput();
  if (segments.size() > limits.max_segments) {
    throw FrameError(FrameError::Kind::TooManySegments, too_many_segments_message(segments.size(), limits.max_segments));
  }
  uint64_t bytes = capnp::computeSerializedSizeInWords(message) * kWordBytes;
  if (bytes > limits.max_message_bytes) {
    throw FrameError(FrameError::Kind::TooLarge, "outgoing " + too_large_message(bytes, limits.max_message_bytes));
  }
  return capnp::messageToFlatArray(segments);
}

SegmentedFrame encode_segmented_frame(std::unique_ptr<capnp::MessageBuilder> message, const FrameLimits& limits) {
  if (!message) throw std::invalid_argument("encode_segmented_frame: no message");
  auto segments = message->getSegmentsForOutput();
  if (segments.size() > limits.max_segments) {
    throw FrameError(FrameError::Kind::TooManySegments, too_many_segments_message(segments.size(), limits.max_segments));
  }
  SegmentedFrame frame;
  frame.table = kj::heapArray<capnp::word>(table_bytes_for(segments.size()) / kWordBytes);
  auto* table = reinterpret_cast<std::byte*>(frame.table.begin());
  std::memset(table, 0, frame.table.size() * kWordBytes);  // the padding word, when the count is even
  const auto count_minus_one = static_cast<uint32_t>(segments.size() - 1);
  std::memcpy(table, &count_minus_one, 4);
  uint64_t bytes = frame.table.size() * kWordBytes;
  for (size_t i = 0; i < segments.size(); ++i) {
    const auto words = static_cast<uint32_t>(segments[i].size());
    std::memcpy(table + 4 + 4 * i, &words, 4);
    bytes += uint64_t{words} * kWordBytes;
  }
  if (bytes > limits.max_message_bytes) {
    throw FrameError(FrameError::Kind::TooLarge, "outgoing " + too_large_message(bytes, limits.max_message_bytes));
  }
  frame.bytes = static_cast<size_t>(bytes);
  frame.message = std::move(message);
  return frame;
}

// ------------------------------------------------------------------------------------------- decoding

FrameDecoder::FrameDecoder(FrameLimits limits) : limits_(limits) {
  if (limits_.max_segments == 0 || limits_.max_message_bytes < 2 * kWordBytes || limits_.nesting_limit <= 0) {
    throw std::invalid_argument("FrameLimits: max_segments " + std::to_string(limits_.max_segments) +
                                ", max_message_bytes " + std::to_string(limits_.max_message_bytes) +
                                ", nesting_limit " + std::to_string(limits_.nesting_limit) +
                                " (need >= 1, >= 16, >= 1)");
  }
  table_.reserve(kWordBytes);
}

bool FrameDecoder::mid_frame() const {
  switch (state_) {
    case State::FirstWord: return !table_.empty();
    case State::Table:
    case State::Body: return true;
    case State::Failed: return false;
  }
  return false;
}

void FrameDecoder::fail(FrameError error) {
  state_ = State::Failed;
  table_.clear();
  words_ = nullptr;
  output_.emplace_back(std::move(error));
}

size_t FrameDecoder::feed_header(const std::byte* data, size_t n) {
  size_t want = table_bytes_ - table_.size();
  size_t take = std::min(want, n);
  table_.insert(table_.end(), data, data + take);
  if (table_.size() == table_bytes_) {
    if (state_ == State::FirstWord) {
      on_first_word();
    } else {
      on_table();
    }
  }
  return take;
}

void FrameDecoder::on_first_word() {
  uint64_t segments = uint64_t{read_u32(table_.data())} + 1;
  if (segments > limits_.max_segments) {
    fail(FrameError(FrameError::Kind::TooManySegments, too_many_segments_message(segments, limits_.max_segments)));
    return;
  }
  table_bytes_ = table_bytes_for(segments);
  if (table_bytes_ > limits_.max_message_bytes) {
    fail(FrameError(FrameError::Kind::TooLarge, too_large_message(table_bytes_, limits_.max_message_bytes)));
    return;
  }
  state_ = State::Table;
  if (table_.size() == table_bytes_) on_table();  // one segment: the table is the first word
}

void FrameDecoder::on_table() {
  uint64_t segments = uint64_t{read_u32(table_.data())} + 1;
  uint64_t body_words = 0;
  for (uint64_t i = 0; i < segments; ++i) body_words += read_u32(table_.data() + 4 + 4 * i);
  uint64_t total_bytes = table_bytes_ + body_words * kWordBytes;
  if (total_bytes > limits_.max_message_bytes) {
    fail(FrameError(FrameError::Kind::TooLarge, too_large_message(total_bytes, limits_.max_message_bytes)));
    return;
  }
  words_ = kj::heapArray<capnp::word>(total_bytes / kWordBytes);
  std::memcpy(words_.begin(), table_.data(), table_bytes_);
  body_filled_ = table_bytes_;
  state_ = State::Body;
  if (body_filled_ == total_bytes) on_body_complete();
}

void FrameDecoder::on_body_complete() {
  auto words = kj::mv(words_);
  state_ = State::FirstWord;
  table_.clear();
  table_bytes_ = kWordBytes;
  body_filled_ = 0;
  try {
    output_.emplace_back(Frame::from_words(kj::mv(words), limits_));
  } catch (FrameError& e) {
    output_.emplace_back(std::move(e));
  }
}

std::span<std::byte> FrameDecoder::body_window() {
  if (state_ != State::Body) return {};
  auto* base = reinterpret_cast<std::byte*>(words_.begin());
  return {base + body_filled_, words_.size() * kWordBytes - body_filled_};
}

void FrameDecoder::commit_body(size_t n) {
  auto window = body_window();
  if (n > window.size()) {
    throw std::logic_error("FrameDecoder::commit_body(" + std::to_string(n) + ") with a window of " +
                           std::to_string(window.size()) + " bytes");
  }
  body_filled_ += n;
  if (n == window.size() && n > 0) on_body_complete();
}

void FrameDecoder::feed(std::span<const std::byte> bytes) {
  const std::byte* data = bytes.data();
  size_t left = bytes.size();
  while (left > 0 && state_ != State::Failed) {
    size_t used;
    if (state_ == State::Body) {
      auto window = body_window();
      used = std::min(window.size(), left);
      std::memcpy(window.data(), data, used);
      commit_body(used);
    } else {
      used = feed_header(data, left);
    }
    data += used;
    left -= used;
  }
}

Frame FrameDecoder::pop() {
  if (output_.empty()) throw std::logic_error("FrameDecoder::pop() with no decoded output");
  auto item = std::move(output_.front());
  output_.pop_front();
  if (auto* error = std::get_if<FrameError>(&item)) throw *error;
  return std::move(std::get<Frame>(item));
}

void FrameDecoder::finish() const {
  switch (state_) {
    case State::FirstWord:
      if (!table_.empty()) {
        throw FrameError(FrameError::Kind::Truncated, "stream ended inside a segment table (" +
                                                          std::to_string(table_.size()) + " of at least 8 bytes)");
      }
      return;
    case State::Table:
      throw FrameError(FrameError::Kind::Truncated, "stream ended inside a segment table (" +
                                                        std::to_string(table_.size()) + " of " +
                                                        std::to_string(table_bytes_) + " bytes)");
    case State::Body:
      throw FrameError(FrameError::Kind::Truncated, "stream ended inside a frame body (" +
                                                        std::to_string(body_filled_) + " of " +
                                                        std::to_string(words_.size() * kWordBytes) + " bytes)");
    case State::Failed: return;
  }
}

Frame decode_frame(std::span<const std::byte> bytes, const FrameLimits& limits) {
  FrameDecoder decoder(limits);
  decoder.feed(bytes);
  if (!decoder.has_output()) {
    decoder.finish();
    throw FrameError(FrameError::Kind::Truncated, "no frame in " + std::to_string(bytes.size()) + " bytes");
  }
  Frame frame = decoder.pop();  // throws the frame's error, if any
  if (decoder.mid_frame() || decoder.has_output()) {
    throw FrameError(FrameError::Kind::Malformed,
                     "trailing bytes after a frame of " + std::to_string(frame.size_bytes()) + " bytes (" +
                         std::to_string(bytes.size()) + " bytes given)");
  }
  return frame;
}

}  // namespace moe
