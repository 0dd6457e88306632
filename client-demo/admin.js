// The admin page: polls /admin/stats once a second and /admin/history once a sample, with
// the session cookie that signing in (the form, POST /admin) set; draws the last hour as SVG
// charts with axes; looks a uid up; sends a test push with the session's CSRF token. Without
// a session it shows the sign-in form. Everything the server sends is shown with textContent.
(function () {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';
  var HOUR = 3600 * 1000;
  // the plot area inside each 600 x 200 chart
  var LEFT = 56, RIGHT = 590, TOP = 12, BOTTOM = 168;
  var wrongToken = location.hash === '#wrong-token';
  if (wrongToken) history.replaceState(null, '', location.pathname);
  var csrf = null;
  var sampleMs = 10000;

  function $(id) { return document.getElementById(id); }
  function setText(id, text) { $(id).textContent = String(text); }
  function svg(parent, name, attrs, text) {
    var el = document.createElementNS(SVG, name);
    for (var k in attrs) el.setAttribute(k, String(attrs[k]));
    if (text !== undefined) el.textContent = text;
    parent.appendChild(el);
    return el;
  }
  function two(n) { return (n < 10 ? '0' : '') + n; }
  function clock(t) { var d = new Date(t); return two(d.getHours()) + ':' + two(d.getMinutes()); }
  /** 1, 2 or 5 times a power of ten: a step that gives about `count` ticks up to `max`. */
  function niceStep(max, count) {
    var raw = max / count;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= raw) return steps[i] * power;
    return 10 * power;
  }
  function label(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + 'M';
    if (v >= 1e4) return (v / 1e3).toFixed(0) + 'k';
    return String(Math.round(v * 100) / 100);
  }

  /** One chart: time axis over the last hour (a tick every 10 minutes), value axis from 0. */
  function chart(id, unit, points, now, integers) {
    var el = $(id);
    el.textContent = '';
    var values = points.filter(function (p) { return p.v !== null; });
    var top = Math.max.apply(null, values.map(function (p) { return p.v; }).concat([integers ? 4 : 1]));
    var step = niceStep(top, 4);
    if (integers) step = Math.max(1, Math.round(step));
    var max = Math.ceil(top / step) * step;
    var x = function (t) { return LEFT + ((t - (now - HOUR)) / HOUR) * (RIGHT - LEFT); };
    var y = function (v) { return BOTTOM - (v / max) * (BOTTOM - TOP); };
    for (var v = 0; v <= max + step / 2; v += step) {
      svg(el, 'line', { 'class': 'grid', x1: LEFT, x2: RIGHT, y1: y(v), y2: y(v) });
      svg(el, 'text', { 'class': 'tick y-tick', x: LEFT - 6, y: y(v) + 4, 'text-anchor': 'end' }, label(v));
    }
    for (var m = 60; m >= 0; m -= 10) {
      var t = now - m * 60000;
      svg(el, 'line', { 'class': 'axis', x1: x(t), x2: x(t), y1: BOTTOM, y2: BOTTOM + 4 });
      svg(el, 'text', { 'class': 'tick x-tick', x: x(t), y: BOTTOM + 16, 'text-anchor': m === 0 ? 'end' : 'middle' }, clock(t));
    }
    svg(el, 'line', { 'class': 'axis', x1: LEFT, x2: LEFT, y1: TOP, y2: BOTTOM });
    svg(el, 'line', { 'class': 'axis', x1: LEFT, x2: RIGHT, y1: BOTTOM, y2: BOTTOM });
    svg(el, 'text', { 'class': 'unit', x: 12, y: (TOP + BOTTOM) / 2, transform: 'rotate(-90 12 ' + (TOP + BOTTOM) / 2 + ')', 'text-anchor': 'middle' }, unit);
    svg(el, 'text', { 'class': 'unit', x: RIGHT, y: 196, 'text-anchor': 'end' }, 'time (local)');
    if (values.length === 0) {
      svg(el, 'text', { 'class': 'empty', x: (LEFT + RIGHT) / 2, y: (TOP + BOTTOM) / 2, 'text-anchor': 'middle' }, 'no samples yet');
      return;
    }
    // a gap in the samples (a node down, a reading failed) breaks the line
    var d = '', last = null;
    points.forEach(function (p) {
      if (p.v === null) { last = null; return; }
      d += (last === null || p.t - last > 2.5 * sampleMs ? 'M' : 'L') + x(p.t).toFixed(1) + ',' + y(p.v).toFixed(1) + ' ';
      last = p.t;
    });
    svg(el, 'path', { 'class': 'line', d: d });
  }

  function drawHistory(h) {
    sampleMs = h.sampleMs;
    var now = Date.now();
    var s = h.samples;
    var perS = h.sampleMs / 1000;
    var series = function (f) { return s.map(function (p) { return { t: p.t, v: f(p) }; }); };
    chart('chart-users', 'users', series(function (p) { return p.users; }), now, true);
    chart('chart-pages', 'pages', series(function (p) { return p.pages; }), now, true);
    chart('chart-rate', 'pushes / s', series(function (p) { return p.pushes / perS; }), now, false);
    chart('chart-backlog', 'stored messages', series(function (p) { return p.backlog; }), now, true);
    chart('chart-failures', 'failures / ' + label(perS) + ' s', series(function (p) { return p.webhookFailures; }), now, true);
    setText('sample-note', 'a sample every ' + label(perS) + ' s, ' + s.length + ' so far' + coverage(h));
  }

  function coverage(c) {
    if (c.scope === 'node') return '; this node only (no cluster)';
    return '; cluster, ' + c.nodes + ' node(s)' + (c.complete ? '' : ', some nodes did not answer');
  }

  function rows(body, list, cells) {
    body.textContent = '';
    list.forEach(function (item) {
      var row = document.createElement('tr');
      cells(item).forEach(function (v) {
        var cell = document.createElement('td');
        cell.textContent = v === undefined ? '' : String(v);
        row.appendChild(cell);
      });
      body.appendChild(row);
    });
  }

  function getJson(path) {
    return fetch(path, { credentials: 'same-origin' }).then(function (res) {
      if (res.status === 401) return null;
      return res.json().then(function (body) {
        if (!res.ok) throw new Error((body.error && body.error.message) || 'server answered ' + res.status);
        return body;
      });
    });
  }

  function showSignIn() {
    $('dashboard').hidden = true;
    $('sign-in').hidden = false;
    setText('status', wrongToken ? 'wrong admin token' : 'sign in with the server\'s ADMIN_TOKEN');
    $('token').focus();
  }

  function poll() {
    getJson('/admin/stats').then(function (s) {
      if (s === null) { showSignIn(); return false; } // no more polling until a sign-in
      $('sign-in').hidden = true;
      $('dashboard').hidden = false;
      csrf = s.csrf || null;
      setText('status', 'live, ' + new Date(s.time).toLocaleTimeString());
      setText('scope', s.scope === 'node' ? 'figures of this node (one node, no cluster)' :
        'cluster-wide figures: ' + s.nodes + ' node(s) answered' + (s.complete ? '' : ', some did not (their pushes are missing)'));
      setText('users', s.users);
      setText('pages', s.pages);
      setText('rate', s.pushesPerSecond.toFixed(1));
      setText('backlog', s.backlog ? s.backlog.messages : 'n/a');
      setText('pushes', s.pushes);
      rows($('failures'), s.webhookFailures, function (f) { return [f.time, f.type, f.uid, f.error]; });
      return true;
    }).catch(function (err) {
      setText('status', err.message);
      return true;
    }).then(function (again) {
      if (again) setTimeout(poll, 1000);
    });
  }

  function pollHistory() {
    getJson('/admin/history').then(function (h) {
      if (h === null) return false;
      drawHistory(h);
      return true;
    }).catch(function (err) {
      setText('sample-note', 'history: ' + err.message);
      return true;
    }).then(function (again) {
      if (again) setTimeout(pollHistory, Math.max(1000, sampleMs));
    });
  }

  $('lookup-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var uid = $('lookup-uid').value;
    getJson('/admin/users?uid=' + encodeURIComponent(uid)).then(function (u) {
      if (u === null) { showSignIn(); return; }
      $('lookup').hidden = false;
      setText('lookup-summary', u.uid + ': ' + (u.online ? 'online, ' + u.pages + ' page(s)' : 'offline'));
      var t = u.transports;
      setText('lookup-transports', 'transports: websocket ' + t.websocket + ', polling ' + t.polling + ', sse ' + t.sse + coverage(u));
      setText('lookup-stored-count', u.stored === null ? 'stored messages: the store did not answer' :
        'stored messages: ' + u.stored.count + (u.stored.count > u.stored.messages.length ? ' (the oldest ' + u.stored.messages.length + ' below)' : ''));
      rows($('lookup-stored'), u.stored ? u.stored.messages : [], function (m) { return [m.id, m.event, m.ts, m.expiresAt, m.preview]; });
      setText('lookup-events-scope', u.scope === 'node' ? '(this node)' : '(every node that answered)');
      rows($('lookup-events'), u.webhookEvents, function (r) { return [r.time, r.type, r.outcome, r.detail]; });
    }).catch(function (err) {
      $('lookup').hidden = false;
      setText('lookup-summary', 'lookup failed: ' + err.message);
    });
  });

  $('push-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var body = { api: $('push-api').value, to: $('push-to').value, content: $('push-content').value };
    if ($('push-ttl').value !== '') body.ttl = Number($('push-ttl').value);
    fetch('/admin/push', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf || '' },
      body: JSON.stringify(body),
    }).then(function (res) {
      return res.json().then(function (answer) {
        if (!res.ok) throw new Error((answer.error && answer.error.message) || 'server answered ' + res.status);
        setText('push-result', 'answered: ' + (answer.api === 'legacy' ? answer.answer : answer.status + ' ' + JSON.stringify(answer.answer)));
      });
    }).catch(function (err) {
      setText('push-result', 'not pushed: ' + err.message);
    });
  });

  poll();
  pollHistory();
})();
