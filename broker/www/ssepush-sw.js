/*
 * ssepush-sw.js: the service worker ssepush.js's SsePush.webPush() registers. Each push
 * message from the broker is JSON {channel, id, event, data} (or, for an event too
 * large for a push message, {channel, id, event, truncated: true}); it is shown as a
 * notification, tagged with the channel so a newer one replaces the older (as the
 * broker's Topic does at the push service), and, once it is shown, handed to the
 * open pages of this origin as a message {ssepush: 'push', push: <the message>}. An
 * event whose data is a JSON object with "title" and/or "body" strings gives the
 * notification its text.
 * A click focuses an open page, or opens the scope's root.
 */
'use strict';

/* The notification's title and options for one push message. */
function ssepushNotification(msg) {
	var d = null, title, body;
	try {
		d = typeof msg.data === 'string' ? JSON.parse(msg.data) : null;
	} catch (e) {
		d = null;
	}
	if (d === null || typeof d !== 'object')
		d = {};
	title = typeof d.title === 'string' ? d.title :
	    (msg.event && msg.event !== 'message' ? msg.event : 'New event');
	if (typeof d.body === 'string')
		body = d.body;
	else if (msg.truncated)
		body = 'Event ' + msg.id + ' (too large to show)';
	else
		body = typeof msg.data === 'string' ? msg.data.slice(0, 200) : '';
	return { title: title, options: { body: body, tag: 'ssepush:' + (msg.channel || ''), data: msg } };
}

self.addEventListener('push', function (event) {
	var msg;
	try {
		msg = event.data ? event.data.json() : {};
	} catch (e) {
		msg = { data: event.data ? event.data.text() : '' };
	}
	var n = ssepushNotification(msg);
	var tell = function () {
		return self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (list) {
			list.forEach(function (c) { c.postMessage({ ssepush: 'push', push: msg }); });
		});
	};
	/*
	 * The pages are told once the notification is up (or failed), not before: a page
	 * that reacts by reading getNotifications() while Chromium is still putting it on
	 * display makes Chromium drop it from its store for good (a read deletes stored
	 * notifications the platform does not yet report as displayed).
	 */
	event.waitUntil(self.registration.showNotification(n.title, n.options).then(tell, function (e) {
		return tell().then(function () { throw e; });
	}));
});

self.addEventListener('notificationclick', function (event) {
	event.notification.close();
	event.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (list) {
		if (list.length > 0)
			return list[0].focus();
		return self.clients.openWindow(self.registration.scope);
	}));
});
