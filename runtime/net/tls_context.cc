// TlsContext loading and its attachment to an io_context (see tls_context.h).
#include "runtime/net/tls_context.h"

#include <filesystem>
#include <mutex>
#include <stdexcept>

#include <boost/asio/ssl/error.hpp>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace moe {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;

namespace {

void check_file(const std::string& flag, const std::string& path) {
  if (path.empty()) throw std::invalid_argument("TLS needs " + flag + " (a PEM file), none given");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw std::invalid_argument(flag + " " + path + ": no such file");
  }
}

// The io_context's attached TlsContext, as an Asio service (lives and dies with the io_context).
class TlsService : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;
  explicit TlsService(asio::execution_context& owner) : asio::execution_context::service(owner) {}
  void shutdown() override {}

  void set(std::shared_ptr<TlsContext> tls) {
    std::lock_guard lock(mutex_);
    tls_ = std::move(tls);
  }
  std::shared_ptr<TlsContext> get() {
    std::lock_guard lock(mutex_);
    return tls_;
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<TlsContext> tls_;
};

asio::execution_context::id TlsService::id;

}  // namespace

TlsContext::TlsContext(Private) : context_(ssl::context::tls) {}

std::shared_ptr<TlsContext> TlsContext::load(const TlsFiles& files) {
  check_file("--tls-cert", files.cert);
  check_file("--tls-key", files.key);
  check_file("--tls-ca", files.ca);
  auto tls = std::make_shared<TlsContext>(Private{});
  tls->files_ = files;
  auto& context = tls->context_;
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                      ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  auto step = [](const std::string& what, const std::string& path, auto&& call) {
    boost::system::error_code ec;
    call(ec);
    if (ec) throw std::invalid_argument(what + " " + path + ": " + tls_error_text(ec));
  };
  step("--tls-cert", files.cert, [&](auto& ec) { context.use_certificate_chain_file(files.cert, ec); });
  step("--tls-key", files.key, [&](auto& ec) { context.use_private_key_file(files.key, ssl::context::pem, ec); });
  if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
    ERR_clear_error();
    throw std::invalid_argument("--tls-key " + files.key + " does not match the certificate in --tls-cert " +
                                files.cert);
  }
  step("--tls-ca", files.ca, [&](auto& ec) { context.load_verify_file(files.ca, ec); });
  // Servers require a client certificate; both sides verify the peer's chain against the CA.
  context.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  return tls;
}

void set_io_tls(asio::io_context& io, std::shared_ptr<TlsContext> tls) {
  asio::use_service<TlsService>(io).set(std::move(tls));
}

std::shared_ptr<TlsContext> io_tls(asio::io_context& io) {
  if (!asio::has_service<TlsService>(io)) return nullptr;
  return asio::use_service<TlsService>(io).get();
}

std::string tls_error_text(const boost::system::error_code& ec) {
  std::string text = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    char buffer[256];
    ERR_error_string_n(static_cast<unsigned long>(ec.value()), buffer, sizeof buffer);
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    text = reason ? std::string(reason) : std::string(buffer);
  }
  return text;
}

}  // namespace moe
