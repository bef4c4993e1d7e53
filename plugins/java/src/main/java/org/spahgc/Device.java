package org.spahgc;

/** Where the encoder runs ({@code spahgc_device}; declared in the order of its C values). */
public enum Device {
    /** The GPU this build and machine have, else the CPU. */
    AUTO,
    /** The CPU. */
    CPU,
    /** NVIDIA CUDA; opening fails if it cannot start. */
    CUDA,
    /** DirectML (Windows); opening fails if it cannot start. */
    DIRECT_ML
}
