// The demo page: logs in as a uid, shows pushes as notifications and the online counts.
// Everything from the server is shown with textContent, never as HTML.
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

  // Legacy pushes arrive HTML-escaped; decode to plain text without running any markup.
  function decode(html) {
    return new DOMParser().parseFromString(String(html), 'text/html').documentElement.textContent || '';
  }

  function notify(text) {
    var item = document.createElement('li');
    item.textContent = new Date().toLocaleTimeString() + '  ' + text;
    $('messages').prepend(item);
    var toast = document.createElement('div');
    toast.className = 'toast';
    toast.textContent = text;
    $('toasts').appendChild(toast);
    setTimeout(function () { toast.remove(); }, 6000);
  }

  function showCounts(html) {
    var m = /<b>(\d+)<\/b>[^<]*<b>(\d+)<\/b>/.exec(String(html));
    if (!m) return;
    setText('online_users', m[1]); setText('online_users_cn', m[1]);
    setText('online_pages', m[2]); setText('online_pages_cn', m[2]);
  }

  function setStatus(text, cls) {
    var el = $('status');
    el.textContent = text;
    el.className = 'status ' + cls;
  }

  function connect() {
    var socket = window.io(ioUrl);
    socket.on('connect', function () {
      setStatus('connected', 'online');
      socket.emit('login', uid); // again after every reconnect
    });
    socket.on('disconnect', function () { setStatus('disconnected, retrying…', 'offline'); });
    socket.on('new_msg', function (content) { notify(decode(content)); });
    socket.on('update_online_count', showCounts);
    socket.on('login_error', function (err) { setStatus('login refused: ' + err.message, 'offline'); });
  }

  var script = document.createElement('script');
  script.src = ioUrl + '/socket.io/socket.io.js'; // served by the Socket.IO server: no CDN
  script.onload = connect;
  script.onerror = function () { setStatus('cannot reach the Socket.IO server at ' + ioUrl, 'offline'); };
  document.head.appendChild(script);
})();
