/*
 * The unavoidable crypto for one maximum-size message on this machine:
 * the floor every other benchmark prints its figures against.
 * Prints microseconds per operation (CPU time, best of several rounds).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "crypto/crypto.h"
#include "simplex/simplex.h"

#define MSG_BYTES 16384

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint8_t msg[MSG_BYTES], out[MSG_BYTES + 64], back[MSG_BYTES + 64];
static uint8_t key[32], nonce[24], iv[16], tag[16];
static uint8_t ed_pk[32], ed_sk[32], ed_sig[64];
static uint8_t x_pk[56], x_sk[56], x_pk2[56], x_sk2[56], x_dh[56];
static int failures;

typedef int (*op_fn)(void);

static int op_box_seal(void) { return sx_box_seal(out, msg, MSG_BYTES, nonce, key); }
static int op_box_open(void) { return sx_box_open(back, out, MSG_BYTES + 16, nonce, key); }
static int op_aes_enc(void)
{
    return sx_aes_gcm_encrypt(out, tag, key, iv, 16, NULL, 0, msg, MSG_BYTES);
}
/* TLS 1.3 records are sealed by OpenSSL's ChaCha20-Poly1305 */
static EVP_CIPHER_CTX *chacha_ctx;
static int op_chacha(void)
{
    int len = 0, fin = 0;
    if (EVP_EncryptInit_ex(chacha_ctx, NULL, NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(chacha_ctx, out, &len, msg, MSG_BYTES) != 1 ||
        EVP_EncryptFinal_ex(chacha_ctx, out + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(chacha_ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) != 1)
        return -1;
    return 0;
}
static int op_ed_sign(void) { return sx_ed25519_sign(ed_sig, msg, 300, ed_sk); }
static int op_ed_verify(void) { return sx_ed25519_verify(ed_sig, msg, 300, ed_pk); }
static int op_x448(void)
{
    int rc = sx_x448_keypair(x_pk, x_sk);
    return rc ? rc : sx_x448_dh(x_dh, x_pk2, x_sk);
}

static double measure(op_fn fn, int iters)
{
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        double t0 = cpu_now();
        for (int i = 0; i < iters; i++)
            if (fn() != 0)
                failures++;
        double us = (cpu_now() - t0) * 1e6 / iters;
        if (us < best)
            best = us;
    }
    return best;
}

int main(void)
{
    struct {
        const char *name;
        op_fn fn;
        int iters;
    } ops[] = {
        {"crypto_box seal 16 KB", op_box_seal, 2000},
        {"crypto_box open 16 KB", op_box_open, 2000},
        {"AES-256-GCM encrypt 16 KB", op_aes_enc, 2000},
        {"ChaCha20-Poly1305 16 KB (OpenSSL, TLS record)", op_chacha, 2000},
        {"Ed25519 sign (300 B)", op_ed_sign, 2000},
        {"Ed25519 verify (300 B)", op_ed_verify, 2000},
        {"X448 key generation + DH", op_x448, 200},
    };
    double t[SX_ARRAY_LEN(ops)];

    if (simplex_global_init(NULL) != SIMPLEX_OK)
        return 1;
    sx_random(msg, sizeof msg);
    sx_random(key, sizeof key);
    sx_random(nonce, sizeof nonce);
    sx_random(iv, sizeof iv);
    if (sx_ed25519_keypair(ed_pk, ed_sk) || sx_x448_keypair(x_pk2, x_sk2) ||
        sx_box_seal(out, msg, MSG_BYTES, nonce, key) ||
        sx_ed25519_sign(ed_sig, msg, 300, ed_sk)) {
        fprintf(stderr, "set-up failed\n");
        return 1;
    }
    (void)x_sk2;
    chacha_ctx = EVP_CIPHER_CTX_new();
    if (!chacha_ctx ||
        EVP_EncryptInit_ex(chacha_ctx, EVP_chacha20_poly1305(), NULL, NULL,
                           NULL) != 1) {
        fprintf(stderr, "OpenSSL ChaCha20-Poly1305 unavailable\n");
        return 1;
    }
    printf("crypto floor for one %d-byte message (CPU microseconds per op)\n",
           MSG_BYTES);
    for (size_t i = 0; i < SX_ARRAY_LEN(ops); i++) {
        t[i] = measure(ops[i].fn, ops[i].iters);
        printf("  %-46s %8.1f us\n", ops[i].name, t[i]);
    }
    /* sender: box + TLS record + sign; recipient: TLS + box open + verify */
    printf("  %-46s %8.1f us\n", "sender floor (box seal + TLS + sign)",
           t[0] + t[3] + t[4]);
    printf("  %-46s %8.1f us\n", "recipient floor (TLS + box open + verify)",
           t[3] + t[1] + t[5]);
    EVP_CIPHER_CTX_free(chacha_ctx);
    simplex_global_cleanup();
    if (failures) {
        fprintf(stderr, "%d operations failed\n", failures);
        return 1;
    }
    return 0;
}
