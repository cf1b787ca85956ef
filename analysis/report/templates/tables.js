"use strict";
// Sortable and copyable tables for gradprobe pages: no dependencies, works offline.
// Its SHA-256 is the only script the page's Content-Security-Policy allows, so it reads
// everything it needs from the DOM and never builds markup from strings.
//
// table.sortable: each column header becomes a button. A cell sorts by its data-sort
// attribute when present (a whole number is compared as a number, anything else as text),
// otherwise by the number its text starts with ("1.2e-05 [3e-06, 4e-05]" by 1.2e-05,
// "<1e-4" by 1e-4), otherwise as text. Empty and "n/a" cells stay last either way.
// button[data-copy="ID"]: copies table ID (in its current order) as tab-separated text.
(function () {
  const LEADING_NUMBER = /^\s*[<>\u2264\u2265~]?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)/i;
  const WHOLE_NUMBER = /^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?\s*$/i;

  function sortKey(cell) {
    if (cell === undefined) return null;
    const given = cell.getAttribute("data-sort");
    if (given !== null) {
      if (given.trim() === "" || given === "nan") return null;
      return WHOLE_NUMBER.test(given) ? { num: Number(given) } : { text: given };
    }
    const text = cell.textContent.trim();
    const match = LEADING_NUMBER.exec(text);
    if (match) return { num: Number(match[1]) };
    return text === "" || text === "n/a" ? null : { text: text };
  }

  function compare(a, b) {
    const aNum = a.num !== undefined;
    const bNum = b.num !== undefined;
    if (aNum && bNum) return a.num - b.num;
    if (aNum !== bNum) return aNum ? -1 : 1;
    return a.text.localeCompare(b.text, undefined, { numeric: true });
  }

  function sortTable(table, column, header) {
    const body = table.tBodies[0];
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const rows = Array.from(body.rows, (row, index) =>
      ({ row: row, index: index, key: sortKey(row.cells[column]) }));
    rows.sort(function (x, y) {
      if (x.key === null || y.key === null) {
        return (x.key === null) - (y.key === null) || x.index - y.index;
      }
      const order = ascending ? compare(x.key, y.key) : compare(y.key, x.key);
      return order || x.index - y.index;
    });
    for (const cell of header.parentElement.cells) cell.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    for (const item of rows) body.appendChild(item.row);
  }

  function makeSortable(table) {
    const headers = table.tHead ? table.tHead.rows[0].cells : [];
    Array.from(headers).forEach(function (header, column) {
      const button = document.createElement("button");
      button.type = "button";
      button.title = "Sort by this column";
      while (header.firstChild) button.appendChild(header.firstChild);
      header.appendChild(button);
      button.addEventListener("click", function () { sortTable(table, column, header); });
    });
  }

  function asTsv(table) {
    const clean = (cell) => cell.textContent.replace(/\s+/g, " ").trim();
    return Array.from(table.rows, (row) => Array.from(row.cells, clean).join("\t"))
      .join("\n") + "\n";
  }

  function copyFallback(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }

  async function copyTable(button) {
    const table = document.getElementById(button.getAttribute("data-copy"));
    const status = button.parentElement.querySelector(".status");
    const text = asTsv(table);
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (error) {
      copied = copyFallback(text);  // no Clipboard API outside a secure context
    }
    const rows = table.tBodies[0].rows.length;
    status.textContent = copied ? "Copied " + rows + " rows as tab-separated text."
      : "Copy was refused: select the table and copy it by hand.";
  }

  document.querySelectorAll("table.sortable").forEach(makeSortable);
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () { copyTable(button); });
  });
})();
