// Loopback ceiling measurement (see loopback_ceiling.h): blocking Asio sockets, one server thread.
#include "runtime/net/loopback_ceiling.h"

#include <chrono>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "runtime/net/net_error.h"

namespace moe {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// The ack carries the payload's last byte and the round trip's index, so a wrong echo is caught.
struct Ack {
  uint32_t index;
  uint32_t last_byte;
};

}  // namespace

LoopbackCeiling measure_loopback_ceiling(size_t payload_bytes, int round_trips) {
  if (payload_bytes == 0 || round_trips <= 0) {
    throw NetError(NetError::Kind::BadAddress, "measure_loopback_ceiling: payload_bytes " +
                                                   std::to_string(payload_bytes) + " and round_trips " +
                                                   std::to_string(round_trips) + " must both be >= 1");
  }
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto endpoint = acceptor.local_endpoint();
  const int total = round_trips + 1;  // one warm-up exchange

  std::exception_ptr server_error;
  std::thread server([&] {
    try {
      tcp::socket socket(io);
      acceptor.accept(socket);
      socket.set_option(tcp::no_delay(true));
      std::vector<uint8_t> buffer(payload_bytes);
      for (int i = 0; i < total; ++i) {
        asio::read(socket, asio::buffer(buffer));
        Ack ack{static_cast<uint32_t>(i), buffer.back()};
        asio::write(socket, asio::buffer(&ack, sizeof ack));
      }
    } catch (...) {
      server_error = std::current_exception();
    }
  });

  LoopbackCeiling result{payload_bytes, round_trips, 0};
  std::exception_ptr client_error;
  try {
    tcp::socket socket(io);
    socket.connect(endpoint);
    socket.set_option(tcp::no_delay(true));
    std::vector<uint8_t> payload(payload_bytes);
    auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < total; ++i) {
      if (i == 1) started = std::chrono::steady_clock::now();
      payload.back() = static_cast<uint8_t>(i * 7 + 1);
      asio::write(socket, asio::buffer(payload));
      Ack ack{};
      asio::read(socket, asio::buffer(&ack, sizeof ack));
      if (ack.index != static_cast<uint32_t>(i) || ack.last_byte != payload.back()) {
        throw NetError(NetError::Kind::ConnectionClosed,
                       "loopback echo " + std::to_string(i) + " came back as index " + std::to_string(ack.index) +
                           ", byte " + std::to_string(ack.last_byte) + " (expected byte " +
                           std::to_string(payload.back()) + ")");
      }
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  } catch (...) {
    client_error = std::current_exception();
    // Wake a server still blocked in accept(): connect and hang up, so its read ends with EOF.
    boost::system::error_code ignored;
    tcp::socket waker(io);
    waker.connect(endpoint, ignored);
  }
  server.join();
  if (client_error) std::rethrow_exception(client_error);
  if (server_error) std::rethrow_exception(server_error);
  return result;
}

}  // namespace moe
