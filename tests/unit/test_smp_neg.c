/* SMP protocol codecs on hostile input: truncation at every length, bad
 * tags, trailing bytes, lying counts, deep nesting. Uses the reference
 * vectors (tests/vectors/smp.txt) as the material to cut up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "simplex/simplex.h"
#include "client/smp_proto.h"
#include "vectors.h"

static tv_file tf;

typedef struct hexf {
    uint8_t *p;
    size_t n;
} hexf;

static hexf H(const tv_block *b, const char *key)
{
    hexf h;
    h.p = tv_hex(b, key, &h.n);
    return h;
}

static uint16_t version_of(const tv_block *b)
{
    return (uint16_t)atoi(tv_str(b, "version_str"));
}

static sx_smp_params params_of(const tv_block *b, hexf sess)
{
    sx_smp_params p;
    p.version = version_of(b);
    p.session_id.p = sess.p;
    p.session_id.n = sess.n;
    return p;
}

static const tv_block *find(const char *name)
{
    return tv_find(&tf, name);
}

/* Every strict prefix of a command / message / transmission / batch fails
 * and never reads out of bounds (run under ASan). */
static void test_truncation(void **state)
{
    (void)state;
    for (size_t i = 0; i < tf.n; i++) {
        const tv_block *b = &tf.b[i];
        if (strncmp(b->name, "cmd-", 4) && strncmp(b->name, "srv-", 4))
            continue;
        {
            hexf cmd = H(b, "command"), trans = H(b, "transmission"),
                 bc = H(b, "block_content"), sess = H(b, "session_id");
            uint16_t v = version_of(b);
            int is_cmd = b->name[0] == 'c';
            sx_smp_params prm = params_of(b, sess);
            for (size_t n = 0; n < cmd.n; n++) {
                if (n > 300 && n + 300 < cmd.n && n % 97)
                    continue; /* the middle of a long tail: sampled */
                uint8_t *cp = malloc(n ? n : 1);
                int rc;
                memcpy(cp, cmd.p, n);
                if (is_cmd) {
                    sx_smp_cmd c;
                    rc = sx_smp_cmd_decode(&c, v, cp, n);
                } else {
                    sx_smp_msg m;
                    rc = sx_smp_msg_decode(&m, v, cp, n);
                }
                /* Tail-terminated commands (SEND, MSG, INFO, STORE, PFWD
                 * bodies...) legitimately parse when cut inside the tail */
                if (rc == 0) {
                    sx_wr w;
                    sx_wr_init(&w);
                    if (is_cmd) {
                        sx_smp_cmd c;
                        assert_int_equal(sx_smp_cmd_decode(&c, v, cp, n), 0);
                        assert_int_equal(sx_smp_cmd_encode(&w, v, &c), 0);
                    } else {
                        sx_smp_msg m;
                        assert_int_equal(sx_smp_msg_decode(&m, v, cp, n), 0);
                        assert_int_equal(sx_smp_msg_encode(&w, v, &m), 0);
                    }
                    /* what parses is canonical: it encodes back as is */
                    assert_int_equal(w.len, n);
                    assert_memory_equal(w.p, cp, n);
                    sx_wr_free(&w);
                }
                free(cp);
            }
            for (size_t n = 0; n < bc.n; n++) {
                if (n > 300 && n + 300 < bc.n && n % 89)
                    continue;
                uint8_t *cp = malloc(n ? n : 1);
                sx_smp_batch batch;
                memcpy(cp, bc.p, n);
                assert_true(sx_smp_batch_decode(&batch, cp, n) < 0);
                free(cp);
            }
            /* a transmission cut before the command never parses */
            {
                sx_smp_trans t;
                size_t head;
                assert_int_equal(sx_smp_trans_decode(&t, &prm, trans.p, trans.n), 0);
                head = (size_t)(t.command.p - trans.p);
                for (size_t n = 0; n < head; n++) {
                    uint8_t *cp = malloc(n ? n : 1);
                    memcpy(cp, trans.p, n);
                    assert_true(sx_smp_trans_decode(&t, &prm, cp, n) < 0);
                    free(cp);
                }
            }
            free(cmd.p), free(trans.p), free(bc.p), free(sess.p);
        }
    }
}

/* Handshakes cut at every length: either an error, or (the optional
 * certificate / key being dropped) a value that encodes to a prefix. */
static void test_handshake_truncation(void **state)
{
    static const char *const names[] = {"server-handshake-v9",
                                        "client-handshake-v9",
                                        "client-handshake-v18"};
    (void)state;
    for (size_t k = 0; k < 3; k++) {
        const tv_block *b = find(names[k]);
        hexf content = H(b, "content");
        int server = names[k][0] == 's';
        for (size_t n = 0; n < content.n; n++) {
            uint8_t *cp = malloc(n ? n : 1);
            sx_wr w;
            int rc;
            memcpy(cp, content.p, n);
            sx_wr_init(&w);
            if (server) {
                sx_smp_server_hello h;
                rc = sx_smp_server_hello_decode(&h, cp, n);
                if (rc == 0) {
                    assert_false(h.has_cert);
                    assert_int_equal(sx_smp_server_hello_encode(&w, &h), 0);
                }
            } else {
                sx_smp_client_hello h;
                rc = sx_smp_client_hello_decode(&h, cp, n);
                if (rc == 0)
                    assert_int_equal(sx_smp_client_hello_encode(&w, &h), 0);
            }
            if (rc == 0) {
                assert_true(w.len <= n);
                assert_memory_equal(w.p, cp, w.len);
            }
            sx_wr_free(&w);
            free(cp);
        }
        free(content.p);
    }
}

static void test_trailing_and_tags(void **state)
{
    const tv_block *b;
    hexf cmd;
    uint8_t buf[512];
    sx_smp_cmd c;
    sx_smp_msg m;
    (void)state;

    /* trailing bytes after a complete command */
    b = find("cmd-key-v18");
    cmd = H(b, "command");
    memcpy(buf, cmd.p, cmd.n);
    buf[cmd.n] = 0;
    assert_int_equal(sx_smp_cmd_decode(&c, 18, buf, cmd.n), 0);
    assert_int_equal(sx_smp_cmd_decode(&c, 18, buf, cmd.n + 1), SIMPLEX_ERR_TRAILING);
    free(cmd.p);
    assert_int_equal(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"SUB", 3), 0);
    assert_int_equal(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"SUB ", 4), SIMPLEX_ERR_TRAILING);
    assert_true(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"SUBX", 4) < 0);
    assert_true(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"sub", 3) < 0);
    assert_true(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"", 0) < 0);
    assert_true(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"KEY", 3) < 0);
    assert_true(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"ACK ", 4) < 0);
    assert_true(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"SEND X hi", 9) < 0);
    /* extra flag characters are skipped as the reference does */
    assert_int_equal(sx_smp_cmd_decode(&c, 18, (const uint8_t *)"SEND Tzz hi", 11), 0);
    assert_true(c.notification && c.body.n == 2);
    assert_int_equal(sx_smp_msg_decode(&m, 18, (const uint8_t *)"OK", 2), 0);
    assert_int_equal(sx_smp_msg_decode(&m, 18, (const uint8_t *)"OK ", 3), SIMPLEX_ERR_TRAILING);
    assert_true(sx_smp_msg_decode(&m, 18, (const uint8_t *)"OKAY", 4) < 0);
    assert_true(sx_smp_msg_decode(&m, 18, (const uint8_t *)"ERR AUTH ", 9) < 0);
    assert_true(sx_smp_msg_decode(&m, 18, (const uint8_t *)"ERR CMD FOO", 11) < 0);
    assert_true(sx_smp_msg_decode(&m, 18, (const uint8_t *)"ERR BOGUS", 9) < 0);
    assert_int_equal(sx_smp_msg_decode(&m, 18, (const uint8_t *)"ERR CMD NO_QUEUE", 16), 0);
    assert_int_equal(m.err.cmd, SX_SMP_CMDERR_NO_ENTITY);
    assert_int_equal(sx_smp_msg_decode(&m, 18, (const uint8_t *)"ERR PROXY BROKER NETWORK", 24), 0);
    assert_true(sx_smp_msg_decode(&m, 18, (const uint8_t *)"ERR PROXY BROKER NETWORK X", 26) < 0);
    assert_int_equal(sx_smp_msg_decode(&m, 18, (const uint8_t *)"ERR PROXY BROKER NETWORK TIMEOUT", 32), 0);
    assert_int_equal(m.err.network, SX_SMP_NE_TIMEOUT);
    /* deep nesting is bounded */
    {
        char deep[600] = "ERR ";
        for (int i = 0; i < 20; i++)
            strcat(deep, "PROXY PROTOCOL ");
        strcat(deep, "AUTH");
        assert_true(sx_smp_msg_decode(&m, 18, (const uint8_t *)deep, strlen(deep)) < 0);
    }
    /* BLOCKED is sent as AUTH before v12 and without notice before v18 */
    {
        sx_smp_msg e;
        sx_wr w;
        const char *s = "ERR BLOCKED reason=content,notice={\"ttl\":86400}";
        assert_int_equal(sx_smp_msg_decode(&e, 18, (const uint8_t *)s, strlen(s)), 0);
        sx_wr_init(&w);
        assert_int_equal(sx_smp_msg_encode(&w, 11, &e), 0);
        assert_true(w.len == 8 && !memcmp(w.p, "ERR AUTH", 8));
        sx_wr_reset(&w);
        assert_int_equal(sx_smp_msg_encode(&w, 17, &e), 0);
        assert_true(w.len == 26 && !memcmp(w.p, "ERR BLOCKED reason=content", 26));
        sx_wr_reset(&w);
        e.tag = SX_SMP_MSG_DELD;
        assert_int_equal(sx_smp_msg_encode(&w, 9, &e), 0);
        assert_true(w.len == 3 && !memcmp(w.p, "END", 3));
        sx_wr_free(&w);
    }
}

static void test_bad_blocks(void **state)
{
    sx_smp_batch batch;
    uint8_t buf[64];
    sx_smp_trans t;
    sx_smp_params prm = {18, {NULL, 0}};
    (void)state;
    /* count claims more transmissions than present */
    buf[0] = 3;
    buf[1] = 0, buf[2] = 1, buf[3] = 'a';
    buf[4] = 0, buf[5] = 1, buf[6] = 'b';
    assert_true(sx_smp_batch_decode(&batch, buf, 7) < 0);
    buf[0] = 2;
    assert_int_equal(sx_smp_batch_decode(&batch, buf, 7), 0);
    assert_int_equal(batch.n, 2);
    /* trailing bytes after the last transmission */
    assert_int_equal(sx_smp_batch_decode(&batch, buf, 8), SIMPLEX_ERR_TRAILING);
    /* zero transmissions */
    buf[0] = 0;
    assert_true(sx_smp_batch_decode(&batch, buf, 1) < 0);
    /* Large length beyond the end */
    buf[0] = 1, buf[1] = 0xff, buf[2] = 0xff;
    assert_true(sx_smp_batch_decode(&batch, buf, 7) < 0);
    /* authorization of an unknown length */
    memset(buf, 0, sizeof buf);
    buf[0] = 10;
    assert_true(sx_smp_trans_decode(&t, &prm, buf, 20) < 0);
    /* service signature of the wrong length */
    {
        uint8_t tb[200];
        size_t k = 0;
        tb[k++] = 64;
        memset(tb + k, 7, 64), k += 64;
        tb[k++] = '1';
        tb[k++] = 3;
        memset(tb + k, 1, 3), k += 3;
        tb[k++] = 0;
        tb[k++] = 0;
        assert_true(sx_smp_trans_decode(&t, &prm, tb, k) < 0);
    }
    /* a short (unpaddable) block */
    {
        uint8_t *blk = calloc(1, SX_SMP_BLOCK_SIZE);
        const uint8_t *c;
        size_t n;
        blk[0] = 0xff, blk[1] = 0xff;
        assert_true(sx_smp_block_unpad(blk, &c, &n) < 0);
        free(blk);
    }
    /* batch_fit leaves out what does not fit */
    {
        static uint8_t big[SX_SMP_BATCH_ROOM];
        sx_smp_bytes ts[3] = {{big, 10000}, {big, 10000}, {big, 100}};
        assert_int_equal(sx_smp_batch_fit(ts, 3), 1);
        ts[0].n = 6000;
        ts[1].n = 6000;
        assert_int_equal(sx_smp_batch_fit(ts, 2), 2);
        ts[0].n = SX_SMP_BATCH_ROOM;
        assert_int_equal(sx_smp_batch_fit(ts, 1), 0);
    }
}


static void test_hs_response(void **state)
{
    sx_smp_hs_response r;
    sx_wr w;
    (void)state;
    assert_int_equal(sx_smp_hs_response_decode(&r, (const uint8_t *)"R\003abc", 5), 0);
    assert_false(r.is_error);
    assert_true(r.service_id.n == 3 && !memcmp(r.service_id.p, "abc", 3));
    assert_int_equal(sx_smp_hs_response_decode(&r, (const uint8_t *)"EHANDSHAKE BAD_AUTH", 19), 0);
    assert_true(r.is_error);
    assert_int_equal(r.transport, SX_SMP_TE_HANDSHAKE);
    assert_int_equal(r.handshake, SX_SMP_HS_BAD_AUTH);
    sx_wr_init(&w);
    assert_int_equal(sx_smp_hs_response_encode(&w, &r), 0);
    assert_true(w.len == 19 && !memcmp(w.p, "EHANDSHAKE BAD_AUTH", 19));
    sx_wr_reset(&w);
    assert_int_equal(sx_smp_hs_response_decode(&r, (const uint8_t *)"EVERSION", 8), 0);
    assert_int_equal(r.transport, SX_SMP_TE_VERSION);
    assert_true(sx_smp_hs_response_decode(&r, (const uint8_t *)"EBOGUS", 6) < 0);
    assert_true(sx_smp_hs_response_decode(&r, (const uint8_t *)"X", 1) < 0);
    assert_true(sx_smp_hs_response_decode(&r, (const uint8_t *)"R\005ab", 4) < 0);
    assert_true(sx_smp_hs_response_decode(&r, (const uint8_t *)"", 0) < 0);
    sx_wr_free(&w);
}

static void test_rcv_body(void **state)
{
    sx_smp_rcv_body rb;
    uint8_t q[16] = "QUOTA \0\0\0\0\x65\x53\xf1\0";
    (void)state;
    assert_int_equal(sx_smp_rcv_body_decode(&rb, q, 14), 0);
    assert_true(rb.quota && rb.ts == 1700000000);
    q[5] = '\t'; /* any attoparsec space */
    assert_int_equal(sx_smp_rcv_body_decode(&rb, q, 14), 0);
    assert_true(rb.quota);
    /* a complete quota marker followed by more bytes is an error */
    assert_int_equal(sx_smp_rcv_body_decode(&rb, q, 15), SIMPLEX_ERR_TRAILING);
    /* "QUOTA" not followed by a space: parsed as a message */
    memcpy(q, "QUOTAXYZT body", 14);
    assert_int_equal(sx_smp_rcv_body_decode(&rb, q, 14), 0);
    assert_true(!rb.quota && rb.notification && rb.body.n == 4);
    assert_true(sx_smp_rcv_body_decode(&rb, q, 8) < 0);
    assert_true(sx_smp_rcv_body_decode(&rb, q, 9) < 0);
    assert_true(sx_smp_rcv_body_decode(&rb, (const uint8_t *)"12345678X body", 14) < 0);
    /* extra flag characters before the space are skipped */
    assert_int_equal(sx_smp_rcv_body_decode(&rb, (const uint8_t *)"12345678Fxy body", 16), 0);
    assert_true(!rb.notification && rb.body.n == 4);
}

static int setup(void **state)
{
    (void)state;
    if (simplex_global_init(NULL) != SIMPLEX_OK)
        return -1;
    tv_load(&tf, "smp.txt");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tv_free(&tf);
    simplex_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_handshake_truncation),
        cmocka_unit_test(test_trailing_and_tags),
        cmocka_unit_test(test_bad_blocks),
        cmocka_unit_test(test_hs_response),
        cmocka_unit_test(test_rcv_body),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
