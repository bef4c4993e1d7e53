package org.spahgc;

/**
 * Told how far a prediction's encoder is, after each batch, on the thread that called the
 * prediction. It must return quickly and not throw (JNA reports and drops what it throws).
 */
@FunctionalInterface
public interface ProgressListener {
    /**
     * @param done spots embedded so far
     * @param total spots to embed
     */
    void progress(long done, long total);
}
