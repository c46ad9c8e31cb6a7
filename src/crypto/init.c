/* Crypto backend start-up. */
#include <openssl/crypto.h>
#include <sodium.h>

#include "crypto/crypto.h"

int sx_crypto_init(void)
{
    if (sodium_init() < 0)
        return SIMPLEX_ERR_CRYPTO;
    /* OpenSSL 3 initialises itself; make sure that succeeded. */
    if (OPENSSL_init_crypto(0, NULL) != 1)
        return SIMPLEX_ERR_CRYPTO;
    return SIMPLEX_OK;
}
