/* Views and polling. A view is what one route shows. Navigating away marks it dead, which
   stops its polls and makes late responses for it be ignored. */

import { $, clearError, fill, showError } from "./dom.js";

export const POLL_MS = 2000; // the list and a running search refresh this often

let current = null;

export function newView() {
  if (current) current.dead = true;
  current = { dead: false };
  return current;
}

/** Run `fn` now and every `ms` while the view lives, one call at a time; `fn` returning false
    stops it. A failure is shown (under `key`) and the poll goes on. */
export function poll(view, key, fn, ms = POLL_MS) {
  const tick = async () => {
    if (view.dead) return;
    let again = true;
    try {
      again = (await fn()) !== false;
      clearError(key);
    } catch (err) {
      if (!view.dead) showError(err, key);
    }
    if (again && !view.dead) setTimeout(tick, ms);
  };
  tick();
}

export function mount(...children) {
  fill($("#view"), children);
}
