package org.spahgc;

/**
 * A rectangle in level-0 pixels of a slide.
 *
 * @param x left edge
 * @param y top edge
 * @param width width (&gt; 0 for a prediction)
 * @param height height (&gt; 0 for a prediction)
 */
public record Region(double x, double y, double width, double height) {
    LibSpahgc.NativeRegion toNative() {
        LibSpahgc.NativeRegion region = new LibSpahgc.NativeRegion();
        region.x = x;
        region.y = y;
        region.width = width;
        region.height = height;
        return region;
    }

    /** The C struct of {@code region}; {@code null} for {@code null}. */
    static LibSpahgc.NativeRegion nativeOrNull(Region region) {
        return region == null ? null : region.toNative();
    }
}
