// http_get over a Beast tcp_stream with one deadline for connect, write and read.
#include "tests/integration/observability/http_get.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cctype>
#include <cstdio>
#include <stdexcept>

namespace moe::integration {

namespace beast = boost::beast;
namespace http = boost::beast::http;

HttpReply http_get(const std::string& host, uint16_t port, const std::string& target, std::chrono::milliseconds timeout,
                   const std::string& bearer) {
  const std::string where = "http://" + host + ":" + std::to_string(port) + target;
  try {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address(host), port));
    http::request<http::empty_body> request{http::verb::get, target, 11};
    request.set(http::field::host, host);
    request.set(http::field::connection, "close");
    if (!bearer.empty()) request.set(http::field::authorization, "Bearer " + bearer);
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    http::read(stream, buffer, response);
    beast::error_code ignored;
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    return {response.result_int(), response.body()};
  } catch (const std::exception& e) {
    throw std::runtime_error("GET " + where + " failed: " + e.what());
  }
}

std::string url_encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

}  // namespace moe::integration
