/*
 * The operations endpoints: /healthz (the bus's readiness), /metrics (Prometheus text
 * format) and /stats, /stats/<channel> (JSON, built by reply.c).
 */
#include "broker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "webpush.h"
#include "channel.h"
#include "names.h"

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
	size_t i, n = sizeof counters_bounds / sizeof counters_bounds[0];

	fputs("# HELP ssepush_delivery_latency_seconds Time from publish to the event's last byte handed to the socket.\n"
	    "# TYPE ssepush_delivery_latency_seconds histogram\n", f);
	for (i = 0; i < n; i++) {
		cum += atomic_load(&counters.latency_bucket[i]);
		fprintf(f, "ssepush_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
		    counters_bounds[i], cum);
	}
	fprintf(f, "ssepush_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "ssepush_delivery_latency_seconds_sum %.6f\n"
	    "ssepush_delivery_latency_seconds_count %llu\n",
	    atomic_load(&counters.latency_count),
	    (double)atomic_load(&counters.latency_sum_us) / 1e6,
	    atomic_load(&counters.latency_count));
}

/* One series per reason a subscribe was refused for a while. */
static void
ops_refused(FILE *f)
{
	int i;

	fputs("# HELP ssepush_refused_total Subscribes refused for a while (a limit, or the bus unavailable); EventSource clients were told when to retry.\n"
	    "# TYPE ssepush_refused_total counter\n", f);
	for (i = 0; i < REFUSE_COUNT; i++)
		fprintf(f, "ssepush_refused_total{reason=\"%s\"} %llu\n", counters_refuse_labels[i],
		    atomic_load(&counters.refused[i]));
}

/* The heads that did not fit connection_memory, by how they ended. */
static void
ops_heads(FILE *f)
{
	static const char *const labels[HEAD_COUNT] = { "json_431", "mhd_431", "closed" };
	int i;

	fputs("# HELP ssepush_heads_too_large_total Request heads too large for connection_memory, by how they ended (closed: no room even for a 431).\n"
	    "# TYPE ssepush_heads_too_large_total counter\n", f);
	for (i = 0; i < HEAD_COUNT; i++)
		fprintf(f, "ssepush_heads_too_large_total{answer=\"%s\"} %llu\n", labels[i],
		    atomic_load(&counters.heads_too_large[i]));
}

/* GET /metrics. */
static enum MHD_Result
ops_metrics(struct MHD_Connection *conn)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	enum MHD_Result ret;

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
	ops_refused(f);
	ops_metric(f, "pending_refused_total", "counter", "Connections closed at accept: too many not yet answered (max_pending_per_address, or the files streams need).", atomic_load(&counters.pending_refused));
	ops_metric(f, "header_timeouts_total", "counter", "Connections closed because a request took longer than header_timeout.", atomic_load(&counters.header_timeouts));
	ops_heads(f);
	ops_metric(f, "longpoll_reads_total", "counter", "Long-polls the broker read itself on a kept connection (no libmicrohttpd round).", atomic_load(&counters.repolls));
	ops_metric(f, "longpoll_handed_back_total", "counter", "Next requests of kept long-poll connections that went back to libmicrohttpd (not the same poll, a limit, a token to check again).", atomic_load(&counters.repoll_handed_back));
	ops_metric(f, "slow_readers_total", "counter", "Streams ended because their socket took nothing for request_timeout while data waited.", atomic_load(&counters.slow_readers));
	bus->metrics(f);
	webpush_metrics(f);
	ops_histogram(f);
	fclose(f);
	ret = buf ? reply_text(conn, "text/plain; version=0.0.4; charset=utf-8", buf, len) : MHD_NO;
	free(buf);
	return ret;
}

/* GET /stats/<channel>: one channel's figures, 404 if it is not in memory. */
static enum MHD_Result
ops_channel(struct MHD_Connection *conn, const char *name)
{
	struct channel *ch;
	char id[BROKER_ID_MAX];
	unsigned nsubs;
	size_t history;
	uint64_t published;

	if (!names_channel_valid(name, strlen(name)))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "invalid channel name");
	if ((ch = channel_get(name, strlen(name), false)) == NULL)
		return reply_error(conn, MHD_HTTP_NOT_FOUND, "no such channel");
	pthread_mutex_lock(&ch->lock);
	bus->format_id(id, sizeof id, ch->history.last_seq);
	nsubs = ch->nsubs;
	history = history_count(&ch->history);
	published = ch->published;
	pthread_mutex_unlock(&ch->lock);
	channel_put(ch);
	return reply_channel_stats(conn, name, nsubs, history, published, id);
}

/* Routes /healthz, /metrics and /stats[/<channel>]. */
enum MHD_Result
ops_handle(struct MHD_Connection *conn, const char *url)
{
	char why[160];

	if (strcmp(url, "/healthz") == 0) {
		if (!bus->ready(why, sizeof why))
			return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
		return reply_json(conn, MHD_HTTP_OK, "{\"status\":\"ok\"}");
	}
	if (strcmp(url, "/metrics") == 0)
		return ops_metrics(conn);
	if (strncmp(url, "/stats/", 7) == 0)
		return ops_channel(conn, url + 7);
	return reply_stats(conn);
}
