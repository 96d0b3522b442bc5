/*
 * ssepush.js: the browser client of the ssepush broker. No dependencies.
 *
 * A native EventSource alone stops delivering in ways users only notice as "push
 * randomly stopped": it gives up for good after a network error while offline, may
 * keep saying OPEN after the machine slept, and behind a NAT box that silently forgot
 * the mapping nothing arrives and nothing errors. This client watches the broker's ping
 * events, recreates the EventSource itself (keeping the last event id in the URL, since
 * a new object does not send Last-Event-ID), notices sleep, falls back to long-poll
 * with fetch, surfaces `reset`, asks the application for a fresh token before each
 * reconnect, stops on a refusal that retrying cannot fix (and says why), and can share
 * one connection among the tabs of an origin.
 *
 * Classic script: <script src="/ssepush.js"></script> defines window.SsePush.
 * ES module: import SsePush from '/ssepush.mjs' (a thin wrapper around this file).
 * CommonJS: module.exports = SsePush.
 */
(function (root, factory) {
	'use strict';
	var SsePush = factory();
	if (typeof module === 'object' && module && module.exports)
		module.exports = SsePush;
	if (root)
		root.SsePush = SsePush;
})(typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this, function () {
	'use strict';

	var DEFAULTS = {
		ping: null,		/* seconds asked with ?ping= (null: the broker's default; 0: none) */
		pingInterval: 300,	/* seconds assumed until the first ping says otherwise */
		pingFactor: 1.2,	/* no event or ping for pingFactor x interval: dead */
		pingSlack: 2000,	/* ms; the watchdog waits at least interval + this */
		retryDelay: 30000,	/* ms before the first retry of a failed connection */
		retryMax: 300000,	/* ms; the delay doubles per failure up to this */
		retryJitter: 0.5,	/* up to +50% random, so clients do not return together */
		sleepCheck: 20000,	/* ms between sleep checks */
		sleepThreshold: 90000,	/* ms a timer may be late before we call it sleep */
		longPoll: false,	/* true: long-poll even where EventSource exists */
		allTypes: false,	/* true: read the stream with fetch, so every event type arrives */
		shared: false,		/* share one connection among this origin's tabs */
		lastEventId: null,	/* resume after this id (e.g. kept by the application) */
		token: null,		/* subscriber token, sent as ?token= */
		getToken: null,		/* function returning a token (or a promise of one) */
		session: null,
		origin: null,
		withCredentials: false,
		types: [],		/* event types to listen to before on() is called */
		recentIds: 200		/* ids remembered to drop duplicates */
	};

	function now() { return Date.now(); }

	/*
	 * Whether an HTTP status refuses the request for good, so that asking again cannot
	 * help: 204 (the HTML standard's "stop reconnecting") and every 4xx but 408 and 429.
	 */
	function permanent(status) {
		return status === 204 || (status >= 400 && status < 500 && status !== 408 && status !== 429);
	}

	/*
	 * Incremental text/event-stream parser (for the fetch transports), as the HTML
	 * standard says: onFrame(type, data, id) per event, onRetry(ms) per valid retry: line.
	 */
	function SseParser(onFrame, onRetry) {
		this.buf = '';
		this.onFrame = onFrame;
		this.onRetry = onRetry || null;
		this.reset();
	}
	SseParser.prototype.reset = function () {
		this.data = [];
		this.type = '';
		this.id = undefined;
	};
	SseParser.prototype.feed = function (text) {
		var m, line, re = /\r\n|\n|\r/g;
		this.buf += text;
		for (;;) {
			re.lastIndex = 0;
			m = re.exec(this.buf);
			if (!m || (m[0] === '\r' && m.index === this.buf.length - 1))
				return;
			line = this.buf.slice(0, m.index);
			this.buf = this.buf.slice(m.index + m[0].length);
			this.line(line);
		}
	};
	/* The end of the response: an event without its blank line is dropped, as the standard says. */
	SseParser.prototype.end = function () {
		var line = this.buf;
		this.buf = '';
		if (line.charAt(line.length - 1) === '\r')
			this.line(line.slice(0, -1));	/* a lone CR ended the last line */
		this.reset();
	};
	SseParser.prototype.line = function (line) {
		var i, name, value;
		if (line === '') {
			if (this.data.length > 0 || this.id !== undefined)
				this.onFrame(this.type || 'message', this.data.length > 0 ? this.data.join('\n') : null, this.id);
			this.reset();
			return;
		}
		if (line.charAt(0) === ':')
			return;
		i = line.indexOf(':');
		name = i < 0 ? line : line.slice(0, i);
		value = i < 0 ? '' : line.slice(i + 1);
		if (value.charAt(0) === ' ')
			value = value.slice(1);
		if (name === 'data')
			this.data.push(value);
		else if (name === 'event')
			this.type = value;
		else if (name === 'id' && value.indexOf('\0') < 0)
			this.id = value;
		else if (name === 'retry' && /^[0-9]+$/.test(value) && this.onRetry)
			this.onRetry(parseInt(value, 10));
	};

	/**
	 * new SsePush(url, options): connects at once to url (e.g. '/events/alice').
	 * on(type, fn) / off(type, fn): fn({type, data, id}); type '*' sees every event.
	 * onreset({reason, id}), onstate(state, info), onevent(event), onerror(error):
	 * optional callbacks.
	 * state: 'connecting', 'open', 'waiting' (before a retry; info {delay, reason}),
	 * 'failed' (refused for good; info = error = {status, reason}), 'closed' (close()).
	 * start(): connects again now (after 'failed' or close(), or to skip a wait).
	 * close(): stops until start().
	 */
	function SsePush(url, options) {
		var k, self = this;
		if (!(this instanceof SsePush))
			return new SsePush(url, options);
		this.options = {};
		for (k in DEFAULTS)
			this.options[k] = DEFAULTS[k];
		for (k in options || {})
			this.options[k] = options[k];
		this.url = url;
		this.state = 'connecting';
		this.role = 'solo';		/* 'leader' or 'follower' when shared */
		this.transport = SsePush._transport(this.options);
		this.lastEventId = this.options.lastEventId || null;
		this.connects = 0;		/* connections this object opened */
		this.reconnects = [];		/* reasons, for the application's diagnostics */
		this.error = null;		/* {status, reason} while 'failed' */
		this.onreset = null;
		this.onstate = null;
		this.onevent = null;
		this.onerror = null;
		this._listeners = {};
		this._types = {};
		this._recent = [];
		this._failures = 0;		/* failed tries since a connection last opened */
		this._retry = null;		/* ms: the last retry: of a fetch stream */
		this._quick = false;		/* the one immediate reconnect was used */
		this._gen = 0;
		this._interval = this.options.ping === 0 ? 0 : this.options.ping > 0 ? this.options.ping : this.options.pingInterval;
		this._token = this.options.token;
		this._closed = false;
		this._es = null;
		this._abort = null;
		this._timers = {};
		for (k = 0; k < this.options.types.length; k++)
			this._types[this.options.types[k]] = true;
		this._ononline = function () { if (self.role !== 'follower') self._reconnect('online'); };
		this._begin();
	}

	/* Picks how to read the stream: EventSource, fetch streaming, or long-poll. */
	SsePush._transport = function (o) {
		var es = typeof EventSource !== 'undefined';
		var stream = typeof fetch === 'function' && typeof ReadableStream === 'function' &&
		    typeof TextDecoder === 'function';
		if (o.longPoll || (!es && !(o.allTypes && stream)))
			return 'longpoll';
		return o.allTypes && stream ? 'fetch' : 'eventsource';
	};

	/* Joins the tab group or connects; the constructor's and start()'s common part. */
	SsePush.prototype._begin = function () {
		if (typeof addEventListener === 'function')
			addEventListener('online', this._ononline);
		this._sleepTick();
		if (this.options.shared && typeof BroadcastChannel === 'function' &&
		    typeof navigator === 'object' && navigator.locks && navigator.locks.request)
			this._share();
		else
			this._connect();
	};

	/* Adds a listener for one event type ('*' for all; 'ping' and 'reset' too). */
	SsePush.prototype.on = function (type, fn) {
		(this._listeners[type] = this._listeners[type] || []).push(fn);
		if (type !== '*' && !this._types[type]) {
			this._types[type] = true;
			if (this._es)
				this._listen(this._es, type, this._gen);
			if (this._bc && this.role === 'follower')
				this._bc.postMessage({ kind: 'types', types: [type] });
		}
		return this;
	};

	/* Removes a listener added with on(). */
	SsePush.prototype.off = function (type, fn) {
		var l = this._listeners[type] || [], i = l.indexOf(fn);
		if (i >= 0)
			l.splice(i, 1);
		return this;
	};

	/* Stops: closes the connection, leaves the tab group, clears timers (start() resumes). */
	SsePush.prototype.close = function () {
		if (this._closed)
			return;
		this._closed = true;
		this._stopTransport();
		this._clearTimers();
		if (typeof removeEventListener === 'function')
			removeEventListener('online', this._ononline);
		if (this._releaseLock)
			this._releaseLock();
		this._releaseLock = null;
		if (this._bc)
			this._bc.close();
		this._bc = null;
		this.role = 'solo';
		this._setState('closed');
	};

	/*
	 * Connects again now: after a refusal for good ('failed'), after close(), or while
	 * waiting for a retry. The retry delays start again from retryDelay. A no-op while
	 * connecting or open. In a follower tab it asks the leader tab to do it.
	 */
	SsePush.prototype.start = function () {
		if (this._closed) {
			this._closed = false;
			this._failures = 0;
			this._quick = false;
			this.error = null;
			this._setState('connecting');
			this._begin();
			return this;
		}
		if (this.role === 'follower') {
			this._bc.postMessage({ kind: 'start' });
			return this;
		}
		if (this.state !== 'failed' && this.state !== 'waiting')
			return this;
		if (this.state === 'failed')
			this._sleepTick();
		this._failures = 0;
		this._quick = false;
		this.error = null;
		this._stopTransport();
		this.reconnects.push('start');
		this._connect();
		return this;
	};

	SsePush.prototype._timer = function (name, ms, fn) {
		var self = this, due = now() + ms;
		clearTimeout(this._timers[name]);
		this._timers[name] = setTimeout(function () {
			delete self._timers[name];
			if (self._closed)
				return;
			/* A timer far later than scheduled means the machine slept. */
			if (now() - due > self.options.sleepThreshold)
				self._reconnect('sleep');
			else
				fn();
		}, ms);
	};

	SsePush.prototype._clearTimers = function () {
		var t;
		for (t in this._timers)
			clearTimeout(this._timers[t]);
		this._timers = {};
	};

	SsePush.prototype._sleepTick = function () {
		var self = this;
		this._timer('sleep', this.options.sleepCheck, function () { self._sleepTick(); });
	};

	SsePush.prototype._setState = function (state, info) {
		if (this.state === state && info === undefined)
			return;
		this.state = state;
		this._info = info;
		if (this.role === 'leader' && this._bc && !this._closed)
			this._bc.postMessage({ kind: 'state', state: state, info: info });
		if (typeof this.onstate === 'function')
			this.onstate(state, info);
	};

	/* Builds the request URL: the application's query plus ours. */
	SsePush.prototype._requestUrl = function (longpoll) {
		var base = typeof location === 'object' ? location.href : undefined;
		var u = new URL(this.url, base), q = u.searchParams, o = this.options;
		q.delete('last_event_id');
		if (this.lastEventId)
			q.set('last_event_id', this.lastEventId);
		if (o.ping !== null && o.ping !== undefined)
			q.set('ping', String(o.ping));
		if (this._token)
			q.set('token', this._token);
		if (o.session)
			q.set('session', o.session);
		if (o.origin)
			q.set('origin', o.origin);
		if (longpoll)
			q.set('closeafter', 'event');
		return u.toString();
	};

	/* The fetch options of every request we make ourselves (the transports, the probe). */
	SsePush.prototype._fetchInit = function (ctl) {
		return {
			headers: { Accept: 'text/event-stream' },
			cache: 'no-store',
			credentials: this.options.withCredentials ? 'include' : 'same-origin',
			signal: ctl ? ctl.signal : undefined
		};
	};

	/* Arms the dead-connection watchdog: 1.2 x the ping interval without a sign of life. */
	SsePush.prototype._watch = function () {
		var self = this, s = this._interval * 1000, o = this.options;
		if (!(this._interval > 0) || this.role === 'follower')
			return;
		this._timer('watchdog', Math.max(s * o.pingFactor, s + o.pingSlack), function () {
			self._reconnect('ping timeout');
		});
	};

	/* Asks the application for a token (if it gave getToken), then connects. */
	SsePush.prototype._connect = function () {
		var self = this, gen = ++this._gen, t;
		if (this._closed)
			return;
		this._setState('connecting');
		if (typeof this.options.getToken !== 'function')
			return this._open(gen);
		try {
			t = this.options.getToken();
		} catch (e) {
			return this._failed(gen, 'token');
		}
		Promise.resolve(t).then(function (token) {
			if (gen !== self._gen || self._closed)
				return;
			self._token = token;
			self._open(gen);
		}, function () { self._failed(gen, 'token'); });
	};

	SsePush.prototype._open = function (gen) {
		this.connects++;
		this._watch();
		if (this.transport === 'eventsource')
			this._openEventSource(gen);
		else
			this._poll(gen);
	};

	/* A connection got through: the retry delays start again from retryDelay. */
	SsePush.prototype._opened = function () {
		this._failures = 0;
		this._quick = false;
		this._setState('open');
		this._watch();
	};

	SsePush.prototype._listen = function (es, type, gen) {
		var self = this;
		es.addEventListener(type, function (e) {
			if (gen === self._gen)
				self._frame(type, e.data, type === 'ping' ? undefined : e.lastEventId);
		});
	};

	SsePush.prototype._openEventSource = function (gen) {
		var self = this, t, es;
		es = this._es = new EventSource(this._requestUrl(false),
		    { withCredentials: !!this.options.withCredentials });
		es.onopen = function () {
			if (gen === self._gen)
				self._opened();
		};
		es.onerror = function () {
			if (gen !== self._gen)
				return;
			if (es.readyState === 2)	/* CLOSED: the browser gave up; ask why */
				self._probe(gen);
			else if (typeof self.options.getToken === 'function')
				self._failed(gen, 'error');	/* reconnect ourselves with a fresh token */
			else
				self._setState('connecting');	/* the browser retries by itself */
		};
		this._listen(es, 'message', gen);
		this._listen(es, 'ping', gen);
		this._listen(es, 'reset', gen);
		for (t in this._types)
			if (t !== 'message' && t !== 'ping' && t !== 'reset')
				this._listen(es, t, gen);
	};

	/*
	 * EventSource does not say why it gave up (a 403 and a proxy's 502 look the same), so
	 * the same request is made once with fetch: a refusal for good stops the client with
	 * the status and the server's reason, anything else is retried with the delays.
	 */
	SsePush.prototype._probe = function (gen) {
		var self = this, ctl = typeof AbortController === 'function' ? new AbortController() : null;
		if (this._es)
			this._es.close();
		this._es = null;
		if (typeof fetch !== 'function')
			return this._failed(gen, 'closed');
		this._abort = ctl;
		fetch(this._requestUrl(false), this._fetchInit(ctl)).then(function (res) {
			if (gen !== self._gen)
				return;
			if (permanent(res.status))
				return self._refused(gen, res);
			if (ctl)
				ctl.abort();	/* a stream after all, or a refusal for now */
			self._failed(gen, 'closed');
		}, function () { self._failed(gen, 'closed'); });
	};

	/* A refusal for good: reads the reason ({"error": "..."} from the broker) and stops. */
	SsePush.prototype._refused = function (gen, res) {
		var self = this;
		return res.text().then(null, function () { return ''; }).then(function (text) {
			var reason;
			try {
				reason = JSON.parse(text).error;
			} catch (e) { /* not the broker's JSON */ }
			if (typeof reason !== 'string' || reason === '')
				reason = res.statusText || 'HTTP ' + res.status;
			self._fail(gen, res.status, reason);
		});
	};

	/*
	 * One request of a fetch transport ('fetch': a stream; 'longpoll': one answer each).
	 * After a response that opened, a `retry:` line in it (the broker's or nginx's
	 * "refused for now") is the wait before the next request; long-poll asks again at
	 * once after events; a stream waits its last `retry:` (as EventSource does), also
	 * after a network error. A response that carried nothing, an HTTP error, or a network
	 * error with no `retry:` known is a failed try (_failed); a refusal for good, _fail.
	 */
	SsePush.prototype._poll = function (gen) {
		var self = this, ctl = typeof AbortController === 'function' ? new AbortController() : null;
		var longpoll = this.transport === 'longpoll', got = false, retry = null, opened = false, net = true, done = false;
		var parser = new SseParser(function (type, data, id) {
			got = true;
			if (gen === self._gen)
				self._frame(type, data, id);
		}, function (ms) {
			retry = ms;
			if (!longpoll)
				self._retry = ms;
		});
		function next() {
			var online = typeof navigator !== 'object' || navigator.onLine !== false;
			if (done || gen !== self._gen || self._closed)
				return;
			done = true;
			if (opened && retry !== null)
				self._wait(gen, retry, 'retry');
			else if (!longpoll && self._retry !== null && (opened || (net && online)))
				self._wait(gen, self._retry, 'retry');
			else if (opened && longpoll && got) {
				self._watch();
				self._poll(gen);
			} else
				self._failed(gen, 'closed');
		}
		this._abort = ctl;
		fetch(this._requestUrl(longpoll), this._fetchInit(ctl)).then(function (res) {
			var reader, dec;
			net = false;
			if (gen !== self._gen)
				return;
			if (permanent(res.status))
				return self._refused(gen, res);
			if (res.status !== 200 || !/^text\/event-stream/i.test(res.headers.get('Content-Type') || ''))
				return next();
			opened = true;
			self._opened();
			if (!res.body || !res.body.getReader || typeof TextDecoder !== 'function')
				return res.text().then(function (text) { parser.feed(text); parser.end(); }).then(next, next);
			reader = res.body.getReader();
			dec = new TextDecoder();
			return (function pump() {
				return reader.read().then(function (r) {
					if (r.done) {
						parser.feed(dec.decode());
						parser.end();
						return;
					}
					parser.feed(dec.decode(r.value, { stream: true }));
					return pump();
				});
			})().then(next, next);	/* ended, or broke after it opened: the same */
		}, next).then(null, next);
	};

	SsePush.prototype._stopTransport = function () {
		this._gen++;
		if (this._es) {
			this._es.close();
			this._es = null;
		}
		if (this._abort) {
			this._abort.abort();
			this._abort = null;
		}
		clearTimeout(this._timers.watchdog);
		clearTimeout(this._timers.retry);
	};

	/* Waits ms (state 'waiting', info {delay, reason}), then connects again. */
	SsePush.prototype._wait = function (gen, ms, why) {
		var self = this;
		if (gen !== this._gen || this._closed || this.state === 'failed')
			return;
		this._stopTransport();
		this._setState('waiting', { delay: ms, reason: why });
		this._timer('retry', ms, function () {
			self.reconnects.push(why);
			self._connect();
		});
	};

	/*
	 * A try failed: the next one after retryDelay, doubled per failure since a connection
	 * last opened, up to retryMax, plus up to retryJitter.
	 */
	SsePush.prototype._failed = function (gen, why) {
		var o = this.options, d;
		if (gen !== this._gen || this._closed || this.state === 'failed')
			return;
		d = Math.min(o.retryMax, o.retryDelay * Math.pow(2, this._failures));
		d = Math.round(Math.min(o.retryMax, d * (1 + Math.random() * o.retryJitter)));
		this._failures++;
		this._wait(gen, d, why);
	};

	/* Refused for good: stops everything, reports {status, reason}; only start() resumes. */
	SsePush.prototype._fail = function (gen, status, reason) {
		if (gen !== this._gen || this._closed)
			return;
		this._stopTransport();
		this._clearTimers();
		this.error = { status: status, reason: reason };
		this._setState('failed', { status: status, reason: reason });
		if (typeof this.onerror === 'function')
			this.onerror(this.error);
	};

	/*
	 * Drops the current connection (dead, or the network came back, or the machine woke)
	 * and connects again: at once the first time; when that one does not get through
	 * either, after the retry delays of _failed (retryDelay first).
	 */
	SsePush.prototype._reconnect = function (why) {
		if (this._closed || this.state === 'failed')
			return;
		if (why === 'sleep')
			this._sleepTick();
		if (this.role === 'follower')
			return;
		if (why === 'sleep' || why === 'online') {
			this._failures = 0;
			this._quick = false;
		}
		if (!this._quick) {
			this._quick = true;
			this._stopTransport();
			this.reconnects.push(why);
			this._connect();
		} else {
			this._failed(this._gen, why);
		}
	};

	/* Handles one frame from the broker (own connection). */
	SsePush.prototype._frame = function (type, data, id) {
		var p;
		this._watch();
		if (type === 'ping') {
			try {
				p = JSON.parse(data);
				if (p && p.interval >= 0)
					this._interval = p.interval;
			} catch (e) { /* keep the interval */ }
			this._watch();
			this._emit({ type: 'ping', data: data, id: null });
			return;
		}
		if (id && this._seen(id) && type !== 'reset')
			return;
		if (this.role === 'leader')
			this._bc.postMessage({ kind: 'event', type: type, data: data, id: id || null });
		this._deliver(type, data, id);
	};

	/* Remembers id; returns true if it was delivered before (a duplicate). */
	SsePush.prototype._seen = function (id) {
		if (this._recent.indexOf(id) >= 0)
			return true;
		this._recent.push(id);
		if (this._recent.length > this.options.recentIds)
			this._recent.shift();
		return false;
	};

	SsePush.prototype._deliver = function (type, data, id) {
		var r;
		if (id)
			this.lastEventId = id;
		if (type === 'reset') {
			try {
				r = JSON.parse(data);
			} catch (e) {
				r = {};
			}
			r = { reason: r && r.reason ? r.reason : 'unknown', id: id || null };
			if (typeof this.onreset === 'function')
				this.onreset(r);
		}
		this._emit({ type: type, data: data, id: id || null });
	};

	SsePush.prototype._emit = function (ev) {
		var l = (this._listeners[ev.type] || []).concat(ev.type === 'ping' ? [] : this._listeners['*'] || []);
		var i;
		if (ev.type !== 'ping' && typeof this.onevent === 'function')
			this.onevent(ev);
		for (i = 0; i < l.length; i++) {
			try {
				l[i].call(this, ev);
			} catch (e) {
				setTimeout(function () { throw e; });
			}
		}
	};

	/* Tab sharing: the tab holding the Web Lock connects and relays on a BroadcastChannel. */
	SsePush.prototype._share = function () {
		var self = this, key = 'ssepush:' + new URL(this.url, typeof location === 'object' ? location.href : undefined).toString();
		var bc = this._bc = new BroadcastChannel(key);
		this.role = 'follower';
		bc.onmessage = function (m) { self._shared(m.data || {}); };
		navigator.locks.request(key, function () {
			if (self._closed || self._bc !== bc)
				return;	/* closed (and maybe started again) while waiting: release */
			self.role = 'leader';
			self.error = null;
			bc.postMessage({ kind: 'leader' });
			self._connect();
			return new Promise(function (resolve) { self._releaseLock = resolve; });
		});
		bc.postMessage({ kind: 'hello', types: Object.keys(this._types) });
	};

	SsePush.prototype._shared = function (m) {
		var i;
		if (this._closed)
			return;
		if (this.role === 'leader') {
			if (m.kind === 'hello')
				this._bc.postMessage({ kind: 'state', state: this.state, info: this._info });
			if (m.kind === 'hello' || m.kind === 'types') {
				for (i = 0; i < (m.types || []).length; i++)
					if (!this._types[m.types[i]]) {
						this._types[m.types[i]] = true;
						if (this._es)
							this._listen(this._es, m.types[i], this._gen);
					}
			}
			if (m.kind === 'start')
				this.start();
			return;
		}
		if (m.kind === 'leader')
			this._bc.postMessage({ kind: 'types', types: Object.keys(this._types) });
		else if (m.kind === 'state')
			this._followState(m.state, m.info);
		else if (m.kind === 'event' && !(m.id && this._seen(m.id) && m.type !== 'reset'))
			this._deliver(m.type, m.data, m.id);
	};

	/* A follower tab takes the leader's state, and its refusal (error, onerror) too. */
	SsePush.prototype._followState = function (state, info) {
		var failed = state === 'failed' && info;
		if (failed && this.state === 'failed')
			return;
		this.error = failed ? { status: info.status, reason: info.reason } : null;
		this._setState(state, info);
		if (failed && typeof this.onerror === 'function')
			this.onerror(this.error);
	};

	/* --- Web Push: for devices that hold no stream (the broker's webpush on) --------- */

	/* The broker's URL for path: base ('' = this page's origin) + path. */
	function webPushUrl(base, path) {
		return (base || '').replace(/\/+$/, '') + path;
	}

	/* base64url (applicationServerKey from GET /webpush/key) to bytes. */
	function webPushKeyBytes(b64) {
		var s = b64.replace(/-/g, '+').replace(/_/g, '/'), raw, out, i;
		while (s.length % 4)
			s += '=';
		raw = atob(s);
		out = new Uint8Array(raw.length);
		for (i = 0; i < raw.length; i++)
			out[i] = raw.charCodeAt(i);
		return out;
	}

	/* Headers of a registration request: JSON, plus the token as a subscribe would send it. */
	function webPushHeaders(o) {
		var h = { 'Content-Type': 'application/json' }, k;
		if (o.token)
			h.Authorization = 'Bearer ' + o.token;
		for (k in o.headers || {})
			h[k] = o.headers[k];
		return h;
	}

	/* Rejects with the broker's JSON reason ({status, reason}) for a refused request. */
	function webPushCheck(res) {
		if (res.ok)
			return res.status === 204 ? null : res.json();
		return res.json().catch(function () { return {}; }).then(function (j) {
			var e = new Error('ssepush web push: ' + res.status + ' ' + (j.error || res.statusText));
			e.status = res.status;
			e.reason = j.error || '';
			throw e;
		});
	}

	/*
	 * Registers a PushSubscription (a PushSubscription or its toJSON()) for options.channel
	 * with the broker: POST /webpush/<channel>, authenticated as subscribing (options.token,
	 * or the cookie with credentials). options: {base, channel, token, headers, types,
	 * session, credentials}. Resolves {channel, id}.
	 */
	SsePush.webPushRegister = function (subscription, options) {
		var o = options || {}, body = subscription && subscription.toJSON ? subscription.toJSON() : subscription;
		body = JSON.parse(JSON.stringify(body || {}));
		if (o.types)
			body.types = o.types;
		if (o.session)
			body.session = o.session;
		return fetch(webPushUrl(o.base, '/webpush/' + encodeURIComponent(o.channel)), {
			method: 'POST', headers: webPushHeaders(o), body: JSON.stringify(body),
			credentials: o.credentials || 'same-origin'
		}).then(webPushCheck);
	};

	/* Removes a registration: DELETE /webpush/<channel>/<id>. Resolves null. */
	SsePush.webPushUnregister = function (id, options) {
		var o = options || {};
		return fetch(webPushUrl(o.base, '/webpush/' + encodeURIComponent(o.channel) + '/' + encodeURIComponent(id)), {
			method: 'DELETE', headers: webPushHeaders(o), credentials: o.credentials || 'same-origin'
		}).then(webPushCheck);
	};

	/*
	 * The whole browser side: asks for notification permission, registers the service
	 * worker (options.serviceWorker, default the broker's /ssepush-sw.js, which shows a
	 * notification per push), subscribes through PushManager with the broker's VAPID key
	 * (GET /webpush/key) and registers the subscription (webPushRegister's options).
	 * Resolves {channel, id, subscription}; rejects where push is unsupported or refused.
	 */
	SsePush.webPush = function (options) {
		var o = options || {}, reg;
		if (typeof navigator === 'undefined' || !navigator.serviceWorker || typeof PushManager === 'undefined')
			return Promise.reject(new Error('ssepush web push: this browser has no Push API'));
		return Promise.resolve(typeof Notification !== 'undefined' && Notification.permission !== 'granted' ?
		    Notification.requestPermission() : 'granted').then(function (perm) {
			if (perm !== 'granted')
				throw new Error('ssepush web push: notifications not allowed');
			return navigator.serviceWorker.register(o.serviceWorker || webPushUrl(o.base, '/ssepush-sw.js'),
			    o.scope ? { scope: o.scope } : undefined);
		}).then(function () {
			return navigator.serviceWorker.ready;
		}).then(function (r) {
			reg = r;
			return fetch(webPushUrl(o.base, '/webpush/key'), { credentials: o.credentials || 'same-origin' })
			    .then(webPushCheck);
		}).then(function (k) {
			return reg.pushManager.getSubscription().then(function (old) {
				return old || reg.pushManager.subscribe({ userVisibleOnly: true,
				    applicationServerKey: webPushKeyBytes(k.key) });
			});
		}).then(function (sub) {
			return SsePush.webPushRegister(sub, o).then(function (r) {
				return { channel: r.channel, id: r.id, subscription: sub };
			});
		});
	};
	SsePush._webPushKeyBytes = webPushKeyBytes;

	SsePush.SseParser = SseParser;
	SsePush.DEFAULTS = DEFAULTS;
	return SsePush;
});
