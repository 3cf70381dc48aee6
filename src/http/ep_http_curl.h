#ifndef EP_HTTP_CURL_H
#define EP_HTTP_CURL_H

/* What every curl handle of eventpipe sets (the HTTP client, the webhook sink). */

#include <curl/curl.h>

/**
 * Sets on e: no signals, TCP_NODELAY, the total and connect timeouts, the
 * error buffer, the body callback with its argument, no proxy (hops go
 * direct: http_proxy and friends are ignored), and for https:// TLS 1.2 at
 * least, verified against ca (NULL: the system store), with the client
 * certificate cert and its key (cert NULL: none; key NULL: in cert) sent
 * when the server asks.
 */
static inline void ep_http_curl_setup(CURL *e, long timeout_ms, long connect_ms, char *errbuf,
                                      curl_write_callback on_body, void *arg, const char *ca,
                                      const char *cert, const char *key)
{
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, arg);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (ca) {
        curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    }
    if (cert) {
        curl_easy_setopt(e, CURLOPT_SSLCERT, cert);
        if (key) {
            curl_easy_setopt(e, CURLOPT_SSLKEY, key);
        }
    }
}

#endif /* EP_HTTP_CURL_H */
