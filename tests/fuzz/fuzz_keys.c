/*
 * Fuzz harness: key decoders. The input is decoded as a public key
 * (SubjectPublicKeyInfo) and as a private key (PKCS#8); whatever decodes
 * must re-encode to exactly the input, and must decode the same way when
 * its algorithm is asked for by name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, int priv)
{
    uint8_t raw[64], raw2[64], der[SX_KEY_DER_MAX];
    size_t raw_len = 0, raw_len2 = 0, der_len = 0;
    sx_key_alg alg = SX_KEY_NONE, alg2 = SX_KEY_NONE;
    int rc;

    rc = priv ? sx_key_private_decode(&alg, raw, &raw_len, SX_KEY_NONE, data,
                                      size)
              : sx_key_public_decode(&alg, raw, &raw_len, SX_KEY_NONE, data,
                                     size);
    if (rc >= 0 && rc != SIMPLEX_OK)
        abort();
    if (rc != SIMPLEX_OK)
        return;
    if (raw_len == 0 || raw_len > 57 || raw_len != sx_key_public_len(alg))
        abort();
    rc = priv ? sx_key_private_encode(der, sizeof der, &der_len, alg, raw)
              : sx_key_public_encode(der, sizeof der, &der_len, alg, raw);
    if (rc != SIMPLEX_OK || der_len != size || memcmp(der, data, size) != 0)
        abort();
    rc = priv ? sx_key_private_decode(&alg2, raw2, &raw_len2, alg, data, size)
              : sx_key_public_decode(&alg2, raw2, &raw_len2, alg, data, size);
    if (rc != SIMPLEX_OK || alg2 != alg || raw_len2 != raw_len ||
        memcmp(raw, raw2, raw_len) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, 0);
    check(data, size, 1);
    return 0;
}
