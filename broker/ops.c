/*
 * The operations endpoints: /healthz, /metrics (Prometheus text format), /stats and
 * /stats/<channel> (JSON), and the delivery-latency histogram they report.
 */
#include "broker.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

static const double latency_bounds[] = COUNTERS_BUCKETS;
#define LATENCY_BUCKETS (sizeof latency_bounds / sizeof latency_bounds[0])

/* Records one publish-to-delivery latency (a bucket per upper bound, cumulative on output). */
void
counters_observe_latency(int64_t ns)
{
	double s = (double)ns / 1e9;
	size_t i;

	for (i = 0; i < LATENCY_BUCKETS && s > latency_bounds[i]; i++)
		;
	if (i < LATENCY_BUCKETS)
		atomic_fetch_add_explicit(&counters.latency_bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&counters.latency_count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&counters.latency_sum_us, (unsigned long long)(ns / 1000),
	    memory_order_relaxed);
}

/* Sends a text body with a content type; the body is copied. */
static enum MHD_Result
ops_text(struct MHD_Connection *conn, const char *type, const char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	cors_headers(conn, r);
	ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* One counter or gauge with its HELP and TYPE lines. */
static void
ops_metric(FILE *f, const char *name, const char *type, const char *help,
    unsigned long long v)
{
	fprintf(f, "# HELP ssepush_%s %s\n# TYPE ssepush_%s %s\nssepush_%s %llu\n",
	    name, help, name, type, name, v);
}

/* The latency histogram with cumulative buckets, as Prometheus expects. */
static void
ops_histogram(FILE *f)
{
	unsigned long long cum = 0;
	size_t i;

	fputs("# HELP ssepush_delivery_latency_seconds Time from publish to the event's last byte handed to the socket.\n"
	    "# TYPE ssepush_delivery_latency_seconds histogram\n", f);
	for (i = 0; i < LATENCY_BUCKETS; i++) {
		cum += atomic_load(&counters.latency_bucket[i]);
		fprintf(f, "ssepush_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
		    latency_bounds[i], cum);
	}
	fprintf(f, "ssepush_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "ssepush_delivery_latency_seconds_sum %.6f\n"
	    "ssepush_delivery_latency_seconds_count %llu\n",
	    atomic_load(&counters.latency_count),
	    (double)atomic_load(&counters.latency_sum_us) / 1e6,
	    atomic_load(&counters.latency_count));
}

/* GET /metrics. */
static enum MHD_Result
ops_metrics(struct MHD_Connection *conn)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	enum MHD_Result ret;
	char why[160];

	if (f == NULL)
		return MHD_NO;
	ops_metric(f, "connections", "gauge", "Open HTTP connections.", atomic_load(&counters.connections));
	ops_metric(f, "subscribers", "gauge", "Open subscriber streams.", atomic_load(&counters.streams));
	ops_metric(f, "channels", "gauge", "Channels in memory.", atomic_load(&counters.channels));
	ops_metric(f, "published_total", "counter", "Events published.", atomic_load(&counters.published));
	ops_metric(f, "delivered_total", "counter", "Events written to subscribers.", atomic_load(&counters.delivered));
	ops_metric(f, "dropped_total", "counter", "Events a subscriber missed (it was sent a reset).", atomic_load(&counters.lagged));
	ops_metric(f, "pings_total", "counter", "Ping events sent.", atomic_load(&counters.pings));
	ops_metric(f, "replays_total", "counter", "Streams that replayed history.", atomic_load(&counters.replays));
	ops_metric(f, "resets_total", "counter", "Reset events sent.", atomic_load(&counters.resets));
	auth_metrics(f);
	ops_metric(f, "rejected_total", "counter", "Requests answered with an error status.", atomic_load(&counters.rejected));
	ops_metric(f, "redis_up", "gauge", "1 when the Redis bus is connected (always 0 standalone).",
	    bus_enabled && bus_ready(why, sizeof why));
	ops_histogram(f);
	fclose(f);
	ret = buf ? ops_text(conn, "text/plain; version=0.0.4; charset=utf-8", buf, len) : MHD_NO;
	free(buf);
	return ret;
}

/* Sends a jansson object (stolen) as the JSON reply. */
static enum MHD_Result
ops_json(struct MHD_Connection *conn, json_t *o)
{
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	enum MHD_Result ret = body ? http_json(conn, MHD_HTTP_OK, body) : MHD_NO;

	free(body);
	json_decref(o);
	return ret;
}

/* GET /stats/<channel>: one channel's figures, 404 if it is not in memory. */
static enum MHD_Result
ops_channel(struct MHD_Connection *conn, const char *name)
{
	struct channel *ch;
	char id[BROKER_ID_MAX];
	json_t *o;

	if (!names_channel_valid(name, strlen(name)))
		return http_error(conn, MHD_HTTP_BAD_REQUEST, "invalid channel name");
	if ((ch = channel_get(name, strlen(name), false)) == NULL)
		return http_error(conn, MHD_HTTP_NOT_FOUND, "no such channel");
	pthread_mutex_lock(&ch->lock);
	channel_format_id(id, sizeof id, ch->history.last_seq);
	o = json_pack("{s:s,s:I,s:I,s:I,s:s}", "channel", name,
	    "subscribers", (json_int_t)ch->nsubs,
	    "history", (json_int_t)history_count(&ch->history),
	    "published", (json_int_t)ch->published, "last_id", id);
	pthread_mutex_unlock(&ch->lock);
	channel_put(ch);
	return ops_json(conn, o);
}

/* Routes /healthz, /metrics and /stats[/<channel>]. */
enum MHD_Result
ops_handle(struct MHD_Connection *conn, const char *url)
{
	char why[160];

	if (strcmp(url, "/healthz") == 0) {
		if (bus_enabled && !bus_ready(why, sizeof why))
			return http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
		return http_json(conn, MHD_HTTP_OK, "{\"status\":\"ok\"}");
	}
	if (strcmp(url, "/metrics") == 0)
		return ops_metrics(conn);
	if (strncmp(url, "/stats/", 7) == 0)
		return ops_channel(conn, url + 7);
	return ops_json(conn, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}",
	    "connections", (json_int_t)atomic_load(&counters.connections),
	    "subscribers", (json_int_t)atomic_load(&counters.streams),
	    "channels", (json_int_t)atomic_load(&counters.channels),
	    "published", (json_int_t)atomic_load(&counters.published),
	    "delivered", (json_int_t)atomic_load(&counters.delivered),
	    "resets", (json_int_t)atomic_load(&counters.resets)));
}
