"""What a screenshot shows, measured by the browser itself: the PNG is decoded in a blank
page of its own (createImageBitmap onto a 2-D canvas), so no image library is needed and
the console's code has no part in it."""

from __future__ import annotations

import base64

_MEASURE = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const { data, width, height } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  let sum = 0, sum2 = 0, centreSum = 0, centreN = 0;
  const colours = new Set();
  const x0 = Math.floor(width * 0.4), x1 = Math.ceil(width * 0.6);
  const y0 = Math.floor(height * 0.4), y1 = Math.ceil(height * 0.6);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = 4 * (y * width + x);
      const lum = 0.2126 * data[i] + 0.7152 * data[i + 1] + 0.0722 * data[i + 2];
      sum += lum; sum2 += lum * lum;
      colours.add(((data[i] >> 4) << 8) | ((data[i + 1] >> 4) << 4) | (data[i + 2] >> 4));
      if (x >= x0 && x < x1 && y >= y0 && y < y1) { centreSum += lum; centreN++; }
    }
  }
  const n = width * height;
  const mean = sum / n;
  return { width, height, mean, std: Math.sqrt(Math.max(sum2 / n - mean * mean, 0)),
           centreMean: centreSum / centreN, colours: colours.size };
}"""


async def image_stats(browser, png: bytes) -> dict:
    """Mean and standard deviation of the luminance (0-255), the mean of the central 20 %
    box, and the number of distinct colours (4 bits a channel) of a PNG."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.set_content("<!doctype html><title>measure</title>")
        return await page.evaluate(_MEASURE, base64.b64encode(png).decode())
    finally:
        await context.close()
