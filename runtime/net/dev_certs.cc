// In-process development certificates (see dev_certs.h).
#include "runtime/net/dev_certs.h"

#include <cstdio>
#include <memory>
#include <random>
#include <stdexcept>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace moe {

namespace {

constexpr long kValidSeconds = 825L * 24 * 3600;

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertFree {
  void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyFree>;
using Cert = std::unique_ptr<X509, CertFree>;

[[noreturn]] void fail(const std::string& step) {
  char text[256] = "unknown error";
  if (unsigned long code = ERR_get_error()) ERR_error_string_n(code, text, sizeof text);
  ERR_clear_error();
  throw std::runtime_error("making development certificates: " + step + " failed: " + text);
}

Key new_key() {
  Key key(EVP_EC_gen("P-256"));
  if (!key) fail("EC P-256 key generation");
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) fail(std::string("extension ") + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` named `common_name`, issued by `issuer` (nullptr: self-signed).
Cert new_cert(EVP_PKEY* key, const std::string& common_name, X509* issuer, EVP_PKEY* issuer_key) {
  Cert cert(X509_new());
  if (!cert) fail("X509_new");
  X509_set_version(cert.get(), 2);
  std::random_device random;
  ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), (uint64_t(random()) << 31) ^ random());
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), kValidSeconds);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                             -1, 0);
  X509* signer = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (!issuer) {
    add_extension(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(cert.get(), signer, NID_basic_constraints, "CA:FALSE");
    add_extension(cert.get(), signer, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add_extension(cert.get(), signer, NID_ext_key_usage, "serverAuth,clientAuth");
    const std::string san = "DNS:" + common_name + ",DNS:localhost,IP:127.0.0.1";
    add_extension(cert.get(), signer, NID_subject_alt_name, san.c_str());
  }
  if (X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) == 0) fail("signing " + common_name);
  return cert;
}

void write_pem(const std::filesystem::path& path, X509* cert, EVP_PKEY* key) {
  FILE* file = std::fopen(path.c_str(), "w");
  if (!file) throw std::runtime_error("making development certificates: cannot write " + path.string());
  const bool ok = cert ? PEM_write_X509(file, cert) == 1
                       : PEM_write_PrivateKey(file, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  std::fclose(file);
  if (!ok) fail("writing " + path.string());
}

}  // namespace

TlsFiles make_dev_certs(const std::filesystem::path& dir, const std::string& name) {
  std::filesystem::create_directories(dir);
  Key ca_key = new_key();
  Cert ca = new_cert(ca_key.get(), "moe-cluster dev CA", nullptr, nullptr);
  Key node_key = new_key();
  Cert node = new_cert(node_key.get(), name, ca.get(), ca_key.get());
  TlsFiles files{(dir / (name + ".pem")).string(), (dir / (name + ".key")).string(), (dir / "ca.pem").string()};
  write_pem(dir / "ca.pem", ca.get(), nullptr);
  write_pem(dir / "ca.key", nullptr, ca_key.get());
  write_pem(files.cert, node.get(), nullptr);
  write_pem(files.key, nullptr, node_key.get());
  return files;
}

}  // namespace moe
