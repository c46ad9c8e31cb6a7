#include "vectors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VECTOR_DIR
#define VECTOR_DIR "tests/vectors"
#endif

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "vectors: %s: %s\n", what, detail ? detail : "");
    abort();
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        die("out of memory", NULL);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void tv_load(tv_file *out, const char *file)
{
    char path[1024];
    FILE *fp;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    tv_block *cur = NULL;

    memset(out, 0, sizeof *out);
    snprintf(path, sizeof path, "%s/%s", VECTOR_DIR, file);
    fp = fopen(path, "r");
    if (!fp)
        die("cannot open", path);
    while ((got = getline(&line, &cap, fp)) >= 0) {
        size_t n = (size_t)got;
        char *colon;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        line[n] = '\0';
        if (n == 0) {
            cur = NULL;
            continue;
        }
        if (line[0] == '#')
            continue;
        colon = strstr(line, ": ");
        if (!colon) {
            /* "key:" with nothing after it */
            if (line[n - 1] == ':')
                colon = line + n - 1;
            else
                die("bad line", line);
        }
        if (!cur) {
            out->b = realloc(out->b, (out->n + 1) * sizeof *out->b);
            if (!out->b)
                die("out of memory", NULL);
            cur = &out->b[out->n++];
            memset(cur, 0, sizeof *cur);
        }
        cur->f = realloc(cur->f, (cur->n + 1) * sizeof *cur->f);
        if (!cur->f)
            die("out of memory", NULL);
        cur->f[cur->n].key = dupn(line, (size_t)(colon - line));
        if (*colon == ':' && colon[1] == ' ')
            cur->f[cur->n].val = dupn(colon + 2, strlen(colon + 2));
        else
            cur->f[cur->n].val = dupn("", 0);
        if (strcmp(cur->f[cur->n].key, "name") == 0)
            cur->name = cur->f[cur->n].val;
        cur->n++;
    }
    free(line);
    fclose(fp);
    for (size_t i = 0; i < out->n; i++)
        if (!out->b[i].name)
            die("block without name in", file);
}

void tv_free(tv_file *tf)
{
    for (size_t i = 0; i < tf->n; i++) {
        for (size_t j = 0; j < tf->b[i].n; j++) {
            free(tf->b[i].f[j].key);
            free(tf->b[i].f[j].val);
        }
        free(tf->b[i].f);
    }
    free(tf->b);
    memset(tf, 0, sizeof *tf);
}

const tv_block *tv_find(const tv_file *tf, const char *name)
{
    for (size_t i = 0; i < tf->n; i++)
        if (strcmp(tf->b[i].name, name) == 0)
            return &tf->b[i];
    die("no vector named", name);
    return NULL;
}

const char *tv_get(const tv_block *b, const char *key)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->f[i].key, key) == 0)
            return b->f[i].val;
    return NULL;
}

const char *tv_str(const tv_block *b, const char *key)
{
    const char *v = tv_get(b, key);
    if (!v)
        die("missing field", key);
    return v;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

uint8_t *tv_hex(const tv_block *b, const char *key, size_t *len)
{
    const char *v = tv_str(b, key);
    size_t n = strlen(v);
    uint8_t *out;

    if (n % 2)
        die("odd-length hex in field", key);
    out = malloc(n / 2 + 1);
    if (!out)
        die("out of memory", NULL);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(v[2 * i]), lo = hexval(v[2 * i + 1]);
        if (hi < 0 || lo < 0)
            die("bad hex in field", key);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (len)
        *len = n / 2;
    return out;
}

size_t tv_count_prefix(const tv_file *tf, const char *prefix)
{
    size_t c = 0, pl = strlen(prefix);
    for (size_t i = 0; i < tf->n; i++)
        if (strncmp(tf->b[i].name, prefix, pl) == 0)
            c++;
    return c;
}
