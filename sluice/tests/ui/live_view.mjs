// Loads sluice's /ui in Debian's headless chromium and watches one Revision while the Rust
// test (e2e `ui::`) drives it from zero to N instances and back. It succeeds once the page has
// shown, in this order: a cold start in the decision list, the desired-scale chart at 2 or
// more, then the chart back at 0 with an idle scale-down in the list. Screenshots of the
// scaled-up and the idle page go to the directory given.
//
// usage: node live_view.mjs ADMIN_URL REVISION_ID SCREENSHOT_DIR TIMEOUT_MS
// stdout: one JSON line with what was seen; exit 0 on success, 1 otherwise.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [admin, revision, shots, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg || 60000);
const profile = mkdtempSync(join(tmpdir(), "sluice-ui-chromium-"));
const seen = { snapshots: 0, coldStart: false, scaledTo: 0, backToZero: false, idle: false,
               pointsGrew: false, decisions: [], errors: [] };
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 1000 },
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => seen.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") seen.errors.push(m.text()); });
  // The page must not reach for anything but sluice's admin port.
  const origin = new URL(admin).origin;
  page.on("request", (r) => { if (!r.url().startsWith(origin)) seen.errors.push("off-origin request " + r.url()); });
  await page.goto(admin + "/ui", { waitUntil: "load" });

  const selector = `section.revision[data-revision="${revision}"]`;
  const read = () => page.evaluate((sel) => {
    const section = document.querySelector(sel);
    if (!section) return null;
    const scale = section.querySelector('svg[data-chart="scale"]');
    return {
      desired: scale ? Number(scale.dataset.last.split(",")[0]) : null,
      points: scale ? Number(scale.dataset.points) : 0,
      max: scale ? Number(scale.dataset.max) : 0,
      decisions: [...section.querySelectorAll(".decisions li span")].map((s) => s.textContent),
      routes: document.querySelectorAll("[data-route]").length,
    };
  }, selector);

  const deadline = Date.now() + timeout;
  let firstPoints = null;
  while (Date.now() < deadline) {
    const s = await read();
    if (s) {
      seen.snapshots += 1;
      seen.decisions = s.decisions;
      firstPoints ??= s.points;
      if (s.points > firstPoints) seen.pointsGrew = true;
      if (s.decisions.some((d) => d.endsWith("cold request"))) seen.coldStart = true;
      if (seen.coldStart && s.desired > seen.scaledTo) {
        seen.scaledTo = s.desired;
        if (s.desired >= 2) await page.screenshot({ path: join(shots, "ui-scaled.png"), fullPage: true });
      }
      if (seen.scaledTo >= 2 && s.desired === 0) seen.backToZero = true;
      if (seen.scaledTo >= 2 && s.decisions.some((d) => d.endsWith(": idle"))) seen.idle = true;
      if (seen.backToZero && seen.idle) break;
    }
    await page.waitForTimeout(500);
  }
  await page.screenshot({ path: join(shots, "ui-idle.png"), fullPage: true });
} catch (e) {
  seen.errors.push(String(e && e.stack || e));
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
const ok = seen.coldStart && seen.scaledTo >= 2 && seen.backToZero && seen.idle && seen.pointsGrew
  && seen.errors.length === 0;
console.log(JSON.stringify({ ok, ...seen }));
process.exit(ok ? 0 : 1);
