package org.spahgc;

import com.sun.jna.Memory;
import java.awt.image.BufferedImage;

/** A {@link BufferedImage} as the native RGBA8 pixels {@code spahgc_predict_pixels} reads. */
final class Pixels {
    /** {@code SPAHGC_PIXEL_FORMAT_RGBA8}: red, green, blue, alpha (straight). */
    static final int FORMAT_RGBA8 = 1;
    static final int BYTES_PER_PIXEL = 4;

    private Pixels() {}

    /** The image's sRGB pixels, rows of {@code width × 4} bytes without padding. */
    static Memory rgba(BufferedImage image) {
        int width = image.getWidth();
        int height = image.getHeight();
        long stride = (long) width * BYTES_PER_PIXEL;
        Memory memory = new Memory(stride * height);
        int[] argb = new int[width];
        byte[] row = new byte[(int) stride];
        for (int y = 0; y < height; y++) {
            image.getRGB(0, y, width, 1, argb, 0, width);
            for (int x = 0; x < width; x++) {
                int p = argb[x];
                row[4 * x] = (byte) (p >>> 16);
                row[4 * x + 1] = (byte) (p >>> 8);
                row[4 * x + 2] = (byte) p;
                row[4 * x + 3] = (byte) (p >>> 24);
            }
            memory.write(y * stride, row, 0, row.length);
        }
        return memory;
    }
}
