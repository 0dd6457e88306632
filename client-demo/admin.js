// The admin page: polls /admin/stats once a second with the session cookie that signing in
// (the form, POST /admin) set, draws pushes per second over the last minute. Without a
// session it shows the sign-in form. Everything is shown with textContent.
(function () {
  'use strict';
  var wrongToken = location.hash === '#wrong-token';
  if (wrongToken) history.replaceState(null, '', location.pathname);
  var points = [];
  var last = null;

  function $(id) { return document.getElementById(id); }
  function setText(id, text) { $(id).textContent = String(text); }

  function draw() {
    var max = Math.max.apply(null, points.concat([1]));
    $('line').setAttribute('points', points.map(function (v, i) {
      return (i * 600 / 59).toFixed(1) + ',' + (118 - (v / max) * 110).toFixed(1);
    }).join(' '));
  }

  function showFailures(list) {
    var body = $('failures');
    body.textContent = '';
    list.forEach(function (f) {
      var row = document.createElement('tr');
      [f.time, f.type, f.uid, f.error].forEach(function (v) {
        var cell = document.createElement('td');
        cell.textContent = v;
        row.appendChild(cell);
      });
      body.appendChild(row);
    });
  }

  function poll() {
    fetch('/admin/stats', { credentials: 'same-origin' }).then(function (res) {
      if (res.status === 401) return null;
      if (!res.ok) throw new Error('server answered ' + res.status);
      return res.json();
    }).then(function (s) {
      if (s === null) {
        // signed out, never signed in, or the session ended: no more polling until a sign-in
        $('dashboard').hidden = true;
        $('sign-in').hidden = false;
        setText('status', wrongToken ? 'wrong admin token' : 'sign in with the server\'s ADMIN_TOKEN');
        $('token').focus();
        return false;
      }
      $('sign-in').hidden = true;
      $('dashboard').hidden = false;
      setText('status', 'live, ' + new Date(s.time).toLocaleTimeString());
      setText('users', s.users);
      setText('pages', s.pages);
      setText('pushes', s.pushes);
      if (last) {
        var seconds = (Date.parse(s.time) - Date.parse(last.time)) / 1000 || 1;
        var rate = Math.max(0, (s.pushes - last.pushes) / seconds);
        setText('rate', rate.toFixed(1));
        points.push(rate);
        if (points.length > 60) points.shift();
        draw();
      }
      last = s;
      showFailures(s.webhookFailures);
      return true;
    }).catch(function (err) {
      setText('status', err.message);
      return true;
    }).then(function (again) {
      if (again) setTimeout(poll, 1000);
    });
  }
  poll();
})();
