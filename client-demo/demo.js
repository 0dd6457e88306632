// The demo page: logs in as a uid through the SDK, shows pushes as notifications and the
// online counts. Everything from the server is shown with textContent, never as HTML.
(function () {
  'use strict';
  var cfg = window.PUSH_SERVER;
  var proto = location.protocol === 'https:' ? 'https:' : 'http:';
  var host = location.hostname.indexOf(':') >= 0 ? '[' + location.hostname + ']' : location.hostname;
  var ioUrl = proto + '//' + host + ':' + cfg.ioPort;
  var apiUrl = proto + '//' + host + ':' + cfg.apiPort;
  // As in the original demo, a timestamp stands in for the site's real user id; ?uid= sets one.
  var uid = new URLSearchParams(location.search).get('uid') || String(Date.now());

  function $(id) { return document.getElementById(id); }
  function setText(id, text) { $(id).textContent = text; }

  setText('uid', uid);
  var toOne = apiUrl + '/?type=publish&to=' + encodeURIComponent(uid) + '&content=' + encodeURIComponent('hello ' + uid);
  var toAll = apiUrl + '/?type=publish&to=&content=' + encodeURIComponent('hello everyone');
  $('send_to_one').href = toOne; setText('send_to_one', toOne);
  $('send_to_all').href = toAll; setText('send_to_all', toAll);
  setText('curl_example', "curl '" + toOne + "'");
  setText('curl_v1', "curl -H 'content-type: application/json' -d '" +
    JSON.stringify({ to: uid, data: 'kept for you', ttl: 300 }) + "' " + apiUrl + '/api/v1/push');

  // Legacy pushes arrive HTML-escaped; decode to plain text without running any markup.
  function decode(html) {
    return new DOMParser().parseFromString(String(html), 'text/html').documentElement.textContent || '';
  }

  function notify(text, tag) {
    var item = document.createElement('li');
    item.textContent = new Date().toLocaleTimeString() + '  ' + text;
    if (tag) {
      var badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = tag;
      item.appendChild(badge);
    }
    $('messages').prepend(item);
    var toast = document.createElement('div');
    toast.className = 'toast';
    toast.textContent = text + (tag ? '  (' + tag + ')' : '');
    $('toasts').appendChild(toast);
    setTimeout(function () { toast.remove(); }, 6000);
  }

  function showCounts(html) {
    var m = /<b>(\d+)<\/b>[^<]*<b>(\d+)<\/b>/.exec(String(html));
    if (!m) return;
    setText('online_users', m[1]); setText('online_users_cn', m[1]);
    setText('online_pages', m[2]); setText('online_pages_cn', m[2]);
  }

  var CHAT_TOPIC = 'chat-demo';
  function chatLine(from, data) {
    var item = document.createElement('li');
    item.textContent = from + ': ' + (typeof data === 'string' ? data : JSON.stringify(data));
    $('chat').appendChild(item);
  }

  var online = true;
  function start() {
    var client = window.PushClient.connect(ioUrl, { uid: uid });
    client.onStatus(function (status, login) {
      var el = $('status');
      el.className = 'status ' + (status === 'connected' ? 'online' : 'offline');
      if (login && !login.ok) el.textContent = 'login refused: ' + login.error.message;
      else if (login) el.textContent = 'connected as ' + login.uid + ', ' + login.pending + ' stored message(s) delivered';
      else el.textContent = status === 'connected' ? 'connected' : online ? status + '…' : 'offline (by the button)';
    });
    function tagOf(meta) {
      return meta && meta.redelivery ? 'stored, delivered after reconnect' : meta && meta.stored ? 'stored' : '';
    }
    // new_msg is always escaped HTML (the legacy API, or a v1 push that names new_msg)
    client.on('new_msg', function (data, meta) { notify(decode(data), tagOf(meta)); });
    // v1 pushes with no event of their own: data is any JSON value, as sent. Messages other
    // pages published to the chat topic come on it too, marked client: true.
    client.on('message', function (data, meta) {
      if (meta && meta.client) return chatLine(meta.uid, data);
      notify(typeof data === 'string' ? data : JSON.stringify(data), tagOf(meta));
    });
    client.subscribe(CHAT_TOPIC);
    $('chat_form').onsubmit = function (e) {
      e.preventDefault();
      var text = $('chat_input').value;
      if (!text) return;
      client.publish(CHAT_TOPIC, text).then(function (reply) {
        if (!reply.ok) return setText('chat_status', 'not sent: ' + reply.error.message);
        setText('chat_status', '');
        $('chat_input').value = '';
        chatLine(uid + ' (me)', text); // the server does not send a page its own message back
      });
    };
    client.on('update_online_count', showCounts);
    $('toggle').onclick = function () {
      online = !online;
      if (online) client.connect(); else client.disconnect();
      setText('toggle', online ? 'Go offline' : 'Come back online');
    };
  }

  // both served by the Socket.IO server, no CDN: its socket.io-client, then the client SDK
  // (packages/push-client, built to a plain script) that drives it
  function load(src, then) {
    var script = document.createElement('script');
    script.src = ioUrl + src;
    script.onload = then;
    script.onerror = function () { setText('status', 'cannot reach the Socket.IO server at ' + ioUrl); };
    document.head.appendChild(script);
  }
  load('/socket.io/socket.io.js', function () { load('/sdk/push-client.js', start); });
})();
