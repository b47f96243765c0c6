/* The device page of the admin: the chart of one data path and the track on a map.
   Data comes from json_script blocks the page renders; nothing is fetched. */
"use strict";

function readJson(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}

function timeLabel(milliseconds) {
  return new Date(milliseconds).toISOString().slice(0, 16).replace("T", " ");
}

function drawChart(chart) {
  const canvas = document.getElementById("device-chart");
  if (!canvas || !chart || !window.Chart) {
    return null;
  }
  const series = (name) => chart.buckets.map((bucket) => ({ x: bucket.t, y: bucket[name] }));
  return new window.Chart(canvas, {
    type: "line",
    data: {
      datasets: [
        { label: "average", data: series("avg"), borderColor: "#417690", pointRadius: 0 },
        { label: "minimum", data: series("min"), borderColor: "#9bc1d6", pointRadius: 0 },
        { label: "maximum", data: series("max"), borderColor: "#e07a5f", pointRadius: 0 },
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      scales: {
        x: { type: "linear", ticks: { callback: (value) => timeLabel(value), maxTicksLimit: 6 } },
      },
      plugins: {
        tooltip: { callbacks: { title: (items) => timeLabel(items[0].parsed.x) + " UTC" } },
      },
    },
  });
}

function drawTrack(track) {
  const element = document.getElementById("device-map");
  if (!element || !track || !window.L) {
    return null;
  }
  const map = window.L.map(element, { attributionControl: Boolean(track.tileUrl) });
  if (track.tileUrl) {
    window.L.tileLayer(track.tileUrl, { maxZoom: 19, attribution: track.attribution }).addTo(map);
  }
  const positions = track.points.map((point) => [point[0], point[1]]);
  if (positions.length === 0) {
    map.setView([0, 0], 1);
    return { map: map, line: null };
  }
  // Drawn as vectors: the track shows even when no tile can be loaded.
  const line = window.L.polyline(positions, { color: "#c0392b", weight: 3 }).addTo(map);
  const first = track.points[0];
  const last = track.points[track.points.length - 1];
  window.L.circleMarker(positions[0], { radius: 5, color: "#2e7d32" })
    .bindTooltip("first " + first[2]).addTo(map);
  window.L.circleMarker(positions[positions.length - 1], { radius: 7, color: "#c0392b" })
    .bindTooltip("last " + last[2]).addTo(map);
  if (positions.length === 1) {
    map.setView(positions[0], 15);
  } else {
    map.fitBounds(line.getBounds(), { padding: [20, 20] });
  }
  return { map: map, line: line };
}

document.addEventListener("DOMContentLoaded", () => {
  window.quantumFleetDevice = {
    chart: drawChart(readJson("chart-data")),
    track: drawTrack(readJson("track-data")),
  };
});
