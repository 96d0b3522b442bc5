/*
 * GET <jmap_eventsource_path> (default /jmap/eventsource/): the JMAP push endpoint of
 * RFC 8620 section 7.3. Reads types, closeafter and ping, finds the account (the
 * channel is the account id), checks the credentials for it, and opens an ordinary
 * stream on the account's channel carrying a jmap_sub (jmap_stream.c), through
 * subscribe.c like /events/. What the stream sends: `event: state` StateChanges whose
 * id is the state the client has, pings as on /events/.
 */
#include "broker.h"

#include <string.h>

#include "jmap.h"
#include "names.h"
#include "stream.h"

/* Reads the query into o (types into *types, new); NULL or the 400 reason. */
static const char *
jmap_parse(struct MHD_Connection *conn, struct stream_opts *o, char **types)
{
	const char *closeafter = request_arg(conn, "closeafter");

	if (subscribe_ping_arg(request_arg(conn, "ping"), &o->ping) == -1)
		return "invalid ping: seconds expected";
	if (closeafter != NULL && strcmp(closeafter, "state") != 0 && strcmp(closeafter, "no") != 0)
		return "invalid closeafter: state or no expected";
	o->longpoll = closeafter != NULL && strcmp(closeafter, "state") == 0;
	if ((*types = jmap_types_parse(request_arg(conn, "types"))) == NULL)
		return "invalid types: \"*\" or a comma list of type names expected";
	return NULL;
}

/*
 * The handler. The account is ?account= (auth none, proxy or token: the credentials
 * must allow its channel as for /events/<account>).
 */
enum MHD_Result
jmap_start(struct MHD_Connection *conn, const char *version, void **req_cls)
{
	const char *account = request_arg(conn, "account"), *why;
	struct stream_opts o = { .conn = conn, .fd = -1 };
	struct auth_result ar;
	char *types = NULL;
	size_t len;

	if (account == NULL)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "no account: ?account=<account id> expected");
	len = strlen(account);
	if (!names_channel_valid(account, len))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "invalid account id");
	if (auth_subscriber(conn, account, len, &ar) == -1)
		return auth_refuse(conn, &ar);
	if ((why = jmap_parse(conn, &o, &types)) != NULL)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, why);
	o.jmap = jmap_sub_new(account, types,
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID"));	/* steals types */
	if (o.jmap == NULL)
		return MHD_NO;
	return subscribe_open(conn, version, account, len, &o, NULL, req_cls);
}
