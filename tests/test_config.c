/* test_config.c - `lostd serve` settings: defaults, environment twins,
 * flag beats env beats default, bounds, byte suffixes, the key file, and the
 * automatic worker count. Also the strict base64 decoder of http.c. */
#include "../server/config.h"
#include "../server/http.h"
#include "check.h"
#include "err.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(struct config *c, char **argv, int argc, char **env, int cores,
                 struct err *e)
{
    config_defaults(c);
    err_clear(e);
    return config_parse(c, argc, argv, env, cores, e);
}

int main(void)
{
    struct config c;
    struct err e;

    CHECK_CASE("defaults", {
        char *argv[] = {"serve"};
        CHECK(parse(&c, argv, 1, NULL, 8, &e) == 0, "%s", e.msg);
        CHECK(!strcmp(c.host, "127.0.0.1"), "host %s", c.host);
        CHECK(c.port == 8080 && c.max_side == 1024 && c.queue == 64, "port/side/queue");
        CHECK(c.max_upload == 20L << 20, "max_upload %ld", c.max_upload);
        CHECK(c.threads == 1 && c.workers == 8, "auto workers %ld x %ld", c.workers, c.threads);
        CHECK(c.model[0] == 0 && c.api_key[0] == 0 && c.log_format == CONFIG_LOG_TEXT, "empty");
    });

    CHECK_CASE("env twin, then flag wins", {
        char *env[] = {"LOSTD_PORT=9000", "LOSTD_MAX_UPLOAD=2M", "LOSTD_LOG_FORMAT=json",
                       "LOSTD_CORS_ORIGINS=*", "OTHER=1", NULL};
        char *argv[] = {"serve", "--port", "9100"};
        CHECK(parse(&c, argv, 3, env, 4, &e) == 0, "%s", e.msg);
        CHECK(c.port == 9100, "flag should beat env: %ld", c.port);
        CHECK(c.max_upload == 2L << 20, "env max_upload %ld", c.max_upload);
        CHECK(c.log_format == CONFIG_LOG_JSON && !strcmp(c.cors_origins, "*"), "env strings");
    });

    CHECK_CASE("--flag=value and threads divide the cores", {
        char *argv[] = {"serve", "--threads=2", "--host=0.0.0.0", "--max-side", "448"};
        CHECK(parse(&c, argv, 5, NULL, 8, &e) == 0, "%s", e.msg);
        CHECK(c.threads == 2 && c.workers == 4, "%ld x %ld", c.workers, c.threads);
        CHECK(!strcmp(c.host, "0.0.0.0") && c.max_side == 448, "host/side");
    });

    CHECK_CASE("one core still gets one worker", {
        char *argv[] = {"serve", "--threads", "4"};
        CHECK(parse(&c, argv, 3, NULL, 1, &e) == 0, "%s", e.msg);
        CHECK(c.workers == 1, "workers %ld", c.workers);
    });

    CHECK_CASE("bad values are usage errors", {
        char *bad[][2] = {{"--port", "70000"}, {"--port", "-1"}, {"--port", "80x"},
                          {"--workers", "nan"}, {"--max-upload", "-5"},
                          {"--max-upload", "10Q"}, {"--max-upload", "99999999999G"},
                          {"--max-side", "0"}, {"--timeout", "0"}, {"--log-format", "xml"},
                          {"--queue", ""}};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char *argv[] = {"serve", bad[i][0], bad[i][1]};
            int rc = parse(&c, argv, 3, NULL, 2, &e);
            CHECK(rc == ERR_INPUT, "%s %s accepted", bad[i][0], bad[i][1]);
        }
        char *env[] = {"LOSTD_QUEUE=lots", NULL};
        char *argv[] = {"serve"};
        CHECK(parse(&c, argv, 1, env, 2, &e) == ERR_INPUT && strstr(e.msg, "LOSTD_QUEUE"),
              "bad env value: %s", e.msg);
    });

    CHECK_CASE("unknown flag and missing value", {
        char *a1[] = {"serve", "--prot", "1"};
        CHECK(parse(&c, a1, 3, NULL, 2, &e) == ERR_INPUT && strstr(e.msg, "--prot"), "%s",
              e.msg);
        char *a2[] = {"serve", "--port"};
        CHECK(parse(&c, a2, 2, NULL, 2, &e) == ERR_INPUT, "missing value accepted");
        char *a3[] = {"serve", "--help"};
        CHECK(parse(&c, a3, 2, NULL, 2, &e) == 0 && c.help, "--help");
    });

    CHECK_CASE("byte counts", {
        long v = 0;
        CHECK(config_parse_bytes("123", &v) == 0 && v == 123, "plain");
        CHECK(config_parse_bytes("64k", &v) == 0 && v == 65536, "k");
        CHECK(config_parse_bytes("20MiB", &v) == 0 && v == 20L << 20, "MiB");
        CHECK(config_parse_bytes("1G", &v) == 0 && v == 1L << 30, "G");
        CHECK(config_parse_bytes(" 1", &v) < 0 && config_parse_bytes("1.5M", &v) < 0 &&
              config_parse_bytes("", &v) < 0 && config_parse_bytes("M", &v) < 0, "malformed");
    });

    CHECK_CASE("API key file", {
        char path[] = "/tmp/lostd_test_key_XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0, "mkstemp");
        if (fd >= 0) {
            CHECK(write(fd, "s3cret\n", 7) == 7, "write");
            close(fd);
            char flag[64];
            snprintf(flag, sizeof flag, "--api-key-file=%s", path);
            char *argv[] = {"serve", flag};
            CHECK(parse(&c, argv, 2, NULL, 2, &e) == 0, "%s", e.msg);
            CHECK(!strcmp(c.api_key, "s3cret"), "key '%s'", c.api_key);
            fd = open(path, O_WRONLY | O_TRUNC);
            close(fd);
            CHECK(parse(&c, argv, 2, NULL, 2, &e) == ERR_INPUT, "empty key file accepted");
            unlink(path);
            CHECK(parse(&c, argv, 2, NULL, 2, &e) == ERR_IO, "missing key file: %s", e.msg);
        }
    });

    CHECK_CASE("usage lists every flag with its env twin", {
        char buf[8192];
        config_usage(buf, sizeof buf);
        CHECK(strstr(buf, "--max-connections") && strstr(buf, "LOSTD_MAX_CONNECTIONS"), "%s",
              buf);
        CHECK(strstr(buf, "--api-key-file") && strstr(buf, "LOSTD_STATIC_DIR"), "missing");
    });

    CHECK_CASE("base64", {
        unsigned char out[64];
        CHECK(http_base64_decode("aGVsbG8=", 8, out, sizeof out) == 5 &&
                  !memcmp(out, "hello", 5), "padded");
        CHECK(http_base64_decode("aGVsbG8", 7, out, sizeof out) == 5, "unpadded");
        CHECK(http_base64_decode("aGVs\nbG8h", 9, out, sizeof out) == 6 &&
                  !memcmp(out, "hell", 4), "whitespace");
        CHECK(http_base64_decode("_-8=", 4, out, sizeof out) == 2 && out[0] == 0xff &&
                  out[1] == 0xef, "url-safe");
        CHECK(http_base64_decode("", 0, out, sizeof out) == 0, "empty");
        CHECK(http_base64_decode("a", 1, out, sizeof out) == -1, "lone char");
        CHECK(http_base64_decode("aGVsbG8=x", 9, out, sizeof out) == -1, "data after pad");
        CHECK(http_base64_decode("aGVsbG8==", 9, out, sizeof out) == -1, "too much pad");
        CHECK(http_base64_decode("aGV*", 4, out, sizeof out) == -1, "bad char");
        CHECK(http_base64_decode("aGF=", 4, out, sizeof out) == -1, "non-canonical bits");
        CHECK(http_base64_decode("aGVsbG8=", 8, out, 4) == -2, "over cap");
    });

    return check_status();
}
