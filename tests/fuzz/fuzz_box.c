/*
 * Fuzz harness: crypto_box / secret box opening and unpadding. The input
 * is opened as tag || ciphertext with a fixed box key and nonce (random
 * data never authenticates; the committed seed is a genuine box), then
 * unpadded; every result is checked for consistency. The input itself is
 * also run through sx_unpad.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The harness's fixed box key (k[i] = i) and nonce (n[i] = 0x80 + i). */
static void fixed_key(uint8_t key[SX_BOX_KEY_BYTES],
                      uint8_t nonce[SX_BOX_NONCE_BYTES])
{
    for (size_t i = 0; i < SX_BOX_KEY_BYTES; i++)
        key[i] = (uint8_t)i;
    for (size_t i = 0; i < SX_BOX_NONCE_BYTES; i++)
        nonce[i] = (uint8_t)(0x80 + i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready = 0;
    uint8_t key[SX_BOX_KEY_BYTES], nonce[SX_BOX_NONCE_BYTES];
    uint8_t *out, *again;
    const uint8_t *m = NULL;
    size_t ml = 0;
    int rc, rc2;

    if (!ready) {
        if (sx_crypto_init() != SIMPLEX_OK)
            abort();
        ready = 1;
    }
    fixed_key(key, nonce);

    /* unpad on the raw input */
    rc = sx_unpad(data, size, &m, &ml);
    if (rc == SIMPLEX_OK) {
        if (size < 2 || m != data + 2 || ml > size - 2 ||
            ml != ((size_t)data[0] << 8 | data[1]))
            abort();
    } else if (rc != SIMPLEX_ERR_PARSE) {
        abort();
    }

    out = malloc(size ? size : 1);
    if (!out)
        return 0;
    rc = sx_box_open(out, data, size, nonce, key);
    if (size < SX_BOX_TAG_BYTES) {
        if (rc != SIMPLEX_ERR_TRUNCATED)
            abort();
    } else if (rc == SIMPLEX_OK) {
        /* authentic: sealing the plaintext again gives the input back */
        again = malloc(size);
        if (!again)
            abort();
        if (sx_box_seal(again, out, size - SX_BOX_TAG_BYTES, nonce, key) !=
                SIMPLEX_OK ||
            memcmp(again, data, size) != 0)
            abort();
        free(again);
    } else if (rc != SIMPLEX_ERR_DECRYPT) {
        abort();
    }

    /* open and unpad agrees with open, then unpad */
    rc2 = sx_box_open_padded(out, &m, &ml, data, size, nonce, key);
    if (rc != SIMPLEX_OK) {
        if (rc2 != rc)
            abort();
    } else if (rc2 == SIMPLEX_OK) {
        if (m != out + 2 || ml > size - SX_BOX_TAG_BYTES - 2)
            abort();
    } else if (rc2 != SIMPLEX_ERR_PARSE) {
        abort();
    }
    free(out);
    return 0;
}
