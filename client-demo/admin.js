// The admin page: polls /admin/stats once a second with the token from ?token=, draws
// pushes per second over the last minute. Everything is shown with textContent.
(function () {
  'use strict';
  var token = new URLSearchParams(location.search).get('token') || '';
  history.replaceState(null, '', location.pathname); // keep the token out of the address bar
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
    fetch('/admin/stats', { headers: { authorization: 'Bearer ' + token } }).then(function (res) {
      if (res.status === 401) throw new Error('unauthorized: open /admin?token=YOUR_ADMIN_TOKEN');
      if (!res.ok) throw new Error('server answered ' + res.status);
      return res.json();
    }).then(function (s) {
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
    }).catch(function (err) {
      setText('status', err.message);
    }).then(function () {
      setTimeout(poll, 1000);
    });
  }
  poll();
})();
