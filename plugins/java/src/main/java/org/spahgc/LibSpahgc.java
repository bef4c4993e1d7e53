package org.spahgc;

import com.sun.jna.Callback;
import com.sun.jna.Library;
import com.sun.jna.Pointer;
import com.sun.jna.Structure;
import com.sun.jna.ptr.PointerByReference;

/**
 * The C ABI of {@code include/spahgc.h}, mapped one to one for JNA. Type mapping (checked for
 * a 64-bit platform when the library loads): {@code size_t} and {@code uint64_t} are
 * {@code long}, {@code uint32_t} and {@code spahgc_status} are {@code int}, C {@code bool}
 * (one byte) is {@code byte} (JNA's {@code boolean} would pass four), strings are UTF-8.
 */
interface LibSpahgc extends Library {
    /** {@code spahgc_engine_options}. */
    @Structure.FieldOrder({"device", "threads", "cache_dir", "cache_max_bytes", "runtime_dir"})
    class Options extends Structure {
        public int device;
        public int threads;
        public String cache_dir;
        public long cache_max_bytes;
        public String runtime_dir;

        /** The struct as {@code spahgc_engine_options_default} returns it. */
        public static class ByValue extends Options implements Structure.ByValue {}
    }

    /** {@code spahgc_region}. */
    @Structure.FieldOrder({"x", "y", "width", "height"})
    class NativeRegion extends Structure {
        public double x;
        public double y;
        public double width;
        public double height;
    }

    /** {@code spahgc_progress_callback}. */
    interface Progress extends Callback {
        void invoke(Pointer user, long done, long total);
    }

    /** {@code spahgc_request}. */
    @Structure.FieldOrder({"cancel", "progress", "progress_user"})
    class Request extends Structure {
        public Pointer cancel;
        public Progress progress;
        public Pointer progress_user;
    }

    int spahgc_abi_version();

    String spahgc_version();

    String spahgc_last_error();

    Options.ByValue spahgc_engine_options_default();

    int spahgc_engine_open(String bundleDir, Options options, PointerByReference out);

    void spahgc_engine_close(Pointer engine);

    int spahgc_engine_gene_count(Pointer engine, long[] out);

    int spahgc_engine_gene_name(Pointer engine, long index, PointerByReference out);

    int spahgc_engine_pixel_context(Pointer engine, NativeRegion region, double micronsPerPixel, NativeRegion out);

    Pointer spahgc_cancel_token_new();

    int spahgc_cancel_token_cancel(Pointer token);

    void spahgc_cancel_token_free(Pointer token);

    int spahgc_predict_region(Pointer engine, String slidePath, NativeRegion region, double micronsPerPixel,
            byte tissueOnly, Request request, PointerByReference out);

    int spahgc_predict_pixels(Pointer engine, Pointer pixels, long pixelsLen, int width, int height, long stride,
            int format, double micronsPerPixel, long originX, long originY, NativeRegion region, byte tissueOnly,
            Request request, PointerByReference out);

    int spahgc_result_spot_count(Pointer result, long[] out);

    int spahgc_result_gene_count(Pointer result, long[] out);

    int spahgc_result_grid(Pointer result, double[] spotDiameterPx, double[] micronsPerPixel);

    int spahgc_result_spot_id(Pointer result, long index, PointerByReference out);

    int spahgc_result_centres(Pointer result, double[] out, long len);

    int spahgc_result_in_tissue(Pointer result, byte[] out, long len);

    int spahgc_result_values(Pointer result, float[] out, long len);

    void spahgc_result_free(Pointer result);
}
