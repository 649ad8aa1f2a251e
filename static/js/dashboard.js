/* Lead dashboard charts (Chart.js, vendored in static/vendor/chart.umd.min.js).
 *
 * Every <canvas data-chart="…" data-values="{json}"> carries the numbers the server
 * computed: the page never computes a statistic, it only draws. (Not json_script: htmx
 * drops <script> elements from swapped content, since allowScriptTags is off.) Sections are replaced by htmx polls; charts in a
 * section about to be swapped out are destroyed, charts in new content are drawn. A drawn
 * canvas carries data-drawn="true" (the browser test waits for it).
 */
(function () {
  "use strict";

  var BLUE = "#2f5bd3";
  var BLUE_SOFT = "rgba(47, 91, 211, 0.28)";
  var BLUE_FAINT = "rgba(47, 91, 211, 0.10)";
  var ORANGE = "#d66e20";
  var GREY = "#8a9099";

  function percent(value) {
    return (value * 100).toFixed(0) + "%";
  }

  function percent1(value) {
    return value === null || value === undefined ? "—" : (value * 100).toFixed(1) + "%";
  }

  function readData(canvas) {
    try {
      return JSON.parse(canvas.dataset.values || "null");
    } catch (error) {
      return null;
    }
  }

  function bound(intervals, index) {
    return intervals.map(function (pair) { return pair ? pair[index] : null; });
  }

  function historyChart(canvas, data) {
    return new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: [
          { label: "Wilson low", data: bound(data.wilson, 0), borderWidth: 0, pointRadius: 0, fill: false, spanGaps: false },
          { label: "95% Wilson", data: bound(data.wilson, 1), borderWidth: 0, pointRadius: 0, backgroundColor: BLUE_FAINT, fill: "-1", spanGaps: false },
          { label: "Bootstrap low", data: bound(data.bootstrap, 0), borderWidth: 0, pointRadius: 0, fill: false, spanGaps: false },
          { label: "95% bootstrap", data: bound(data.bootstrap, 1), borderWidth: 0, pointRadius: 0, backgroundColor: BLUE_SOFT, fill: "-1", spanGaps: false },
          { label: "Win rate", data: data.rate, borderColor: BLUE, backgroundColor: BLUE, borderWidth: 2.5, pointRadius: 5, pointHoverRadius: 7, fill: false, tension: 0, spanGaps: true },
          { label: "No change (50%)", data: data.labels.map(function () { return 0.5; }), borderColor: GREY, borderDash: [6, 4], borderWidth: 1, pointRadius: 0, fill: false }
        ]
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          y: { min: 0, max: 1, ticks: { callback: percent }, title: { display: true, text: "Win rate of the new model" } },
          x: { title: { display: true, text: "Round (candidate)" } }
        },
        plugins: {
          legend: { labels: { filter: function (item) { return item.text.indexOf(" low") === -1; } } },
          tooltip: {
            filter: function (item) { return item.dataset.label === "Win rate"; },
            callbacks: {
              title: function (items) { return data.titles[items[0].dataIndex]; },
              label: function (item) {
                var i = item.dataIndex;
                var b = data.bootstrap[i], w = data.wilson[i];
                return [
                  "Win rate " + percent1(data.rate[i]) + " (N = " + data.n[i] + ")",
                  "Bootstrap " + (b ? percent1(b[0]) + "–" + percent1(b[1]) : "—"),
                  "Wilson " + (w ? percent1(w[0]) + "–" + percent1(w[1]) : "—")
                ];
              }
            }
          }
        }
      }
    });
  }

  function forestChart(canvas, data) {
    return new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: [
          {
            type: "bar", label: "95% interval", data: data.interval, backgroundColor: BLUE_SOFT,
            borderColor: BLUE, borderWidth: 1, barPercentage: 0.45, borderSkipped: false
          },
          {
            type: "scatter", label: "Win rate",
            data: data.rate.map(function (rate, i) { return { x: rate, y: data.labels[i] }; }),
            backgroundColor: ORANGE, borderColor: ORANGE, pointRadius: 5, pointStyle: "rectRot",
            clip: false  // a rate of 0% or 100% sits on the edge: draw the whole marker
          }
        ]
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        layout: { padding: { left: 6, right: 8 } },
        indexAxis: "y",
        scales: {
          x: { min: 0, max: 1, ticks: { callback: percent } },
          y: { type: "category", labels: data.labels }
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (item) {
                var i = item.dataIndex, interval = data.interval[i];
                return percent1(data.rate[i]) + " (" + (interval ? percent1(interval[0]) + "–" + percent1(interval[1]) : "—") + ", N = " + data.n[i] + ")";
              }
            }
          }
        }
      }
    });
  }

  function verdictChart(canvas, data) {
    var colours = [BLUE, "#9aa5b8", "#c7a34a", ORANGE, "#d0d4da"];
    return new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: [""],
        datasets: data.labels.map(function (label, i) {
          return { label: label, data: [data.values[i]], backgroundColor: colours[i], borderWidth: 0 };
        })
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        indexAxis: "y",
        scales: { x: { stacked: true, display: false }, y: { stacked: true, display: false } },
        plugins: { legend: { display: false } }
      }
    });
  }

  var DRAW = { history: historyChart, forest: forestChart, verdicts: verdictChart };

  // Win-matrix cells carry their colour in data-heat: a style attribute in the markup would
  // be refused by the Content-Security-Policy, a colour set from script is not.
  function paint(root) {
    if (!root || !root.querySelectorAll) return;
    root.querySelectorAll("[data-heat]").forEach(function (cell) {
      cell.style.backgroundColor = cell.dataset.heat;
    });
  }

  function draw(root) {
    paint(root);
    if (!window.Chart || !root || !root.querySelectorAll) return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.__chart) return;
      var data = readData(canvas);
      var drawer = DRAW[canvas.dataset.chart];
      if (!data || !drawer) return;
      canvas.__chart = drawer(canvas, data);
      canvas.dataset.drawn = "true";
    });
  }

  function destroy(root) {
    if (!root || !root.querySelectorAll) return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.__chart) {
        canvas.__chart.destroy();
        canvas.__chart = null;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:beforeSwap", function (event) { destroy(event.detail.target); });
  document.addEventListener("htmx:load", function (event) { draw(event.detail.elt); });
})();
