package org.spahgc;

import com.sun.jna.Memory;
import com.sun.jna.Pointer;
import com.sun.jna.ptr.PointerByReference;
import java.awt.image.BufferedImage;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.function.Function;

/**
 * A model bundle opened for prediction. Thread-safe: threads may predict with one engine at
 * once. {@link #close()} waits for the predictions in flight, frees the engine and makes later
 * calls throw {@link IllegalStateException}; closing it again does nothing.
 *
 * <pre>{@code
 * try (SpahgcEngine engine = SpahgcEngine.open(Path.of("bundle"))) {
 *     Prediction p = engine.predictRegion(Path.of("slide.svs"), new Region(0, 0, 2000, 2000), 0, true);
 *     float erbb2 = p.value(0, p.genes().indexOf("ERBB2"));
 * }
 * }</pre>
 */
public final class SpahgcEngine implements AutoCloseable {
    private final NativeHandle handle;
    private final List<String> genes;

    private SpahgcEngine(Pointer engine) {
        LibSpahgc lib = Spahgc.lib();
        handle = new NativeHandle("engine", engine, lib::spahgc_engine_close);
        try {
            genes = readGenes(lib, engine);
        } catch (RuntimeException e) {
            handle.close();
            throw e;
        }
    }

    /** Opens and verifies the model bundle in the directory {@code bundle} with the defaults. */
    public static SpahgcEngine open(Path bundle) {
        return open(bundle, EngineOptions.DEFAULTS);
    }

    /**
     * Opens and verifies the model bundle in the directory {@code bundle}. The encoder loads on
     * the first prediction.
     *
     * @throws SpahgcException with {@link Status#BUNDLE} if the bundle is missing or corrupt
     */
    public static SpahgcEngine open(Path bundle, EngineOptions options) {
        LibSpahgc lib = Spahgc.lib();
        PointerByReference out = new PointerByReference();
        Spahgc.check(lib.spahgc_engine_open(bundle.toString(), options.toNative(lib), out));
        return new SpahgcEngine(out.getValue());
    }

    /** The genes the engine predicts: the columns of its predictions. */
    public List<String> genes() {
        return handle.use(engine -> genes);
    }

    /**
     * The level-0 rectangle whose pixels {@link #predictPixels} needs for its prediction of
     * {@code region} to equal {@link #predictRegion}'s: the grid blocks that hold the region's
     * spots, their margin spots and all their patches, at {@code micronsPerPixel} (&gt; 0).
     */
    public Region pixelContext(Region region, double micronsPerPixel) {
        Objects.requireNonNull(region);
        return handle.use(engine -> {
            LibSpahgc.NativeRegion out = new LibSpahgc.NativeRegion();
            Spahgc.check(Spahgc.lib().spahgc_engine_pixel_context(engine, region.toNative(), micronsPerPixel, out));
            out.read();
            return new Region(out.x, out.y, out.width, out.height);
        });
    }

    /** {@link #predictRegion(Path, Region, double, boolean, CancelToken, ProgressListener)} without controls. */
    public Prediction predictRegion(Path slide, Region region, double micronsPerPixel, boolean tissueOnly) {
        return predictRegion(slide, region, micronsPerPixel, tissueOnly, null, null);
    }

    /**
     * Predicts expression for the grid spots of a region of a slide file (SVS, NDPI, MRXS, tiled
     * TIFF, JPEG, PNG, ...).
     *
     * @param region level-0 rectangle; {@code null}: the whole slide
     * @param micronsPerPixel level-0 resolution; 0: from the slide's metadata
     * @param tissueOnly leave out spots on glass
     * @param cancel ends the prediction with {@link Status#CANCELLED} when raised; may be null
     * @param progress told the encoder's progress; may be null
     */
    public Prediction predictRegion(Path slide, Region region, double micronsPerPixel, boolean tissueOnly,
            CancelToken cancel, ProgressListener progress) {
        String path = slide.toString();
        return predict(cancel, progress, (engine, request) -> {
            PointerByReference out = new PointerByReference();
            Spahgc.check(Spahgc.lib().spahgc_predict_region(engine, path, Region.nativeOrNull(region),
                    micronsPerPixel, flag(tissueOnly), request, out));
            return out.getValue();
        });
    }

    /**
     * {@link #predictPixels(BufferedImage, double, long, long, Region, boolean, CancelToken, ProgressListener)}
     * without controls.
     */
    public Prediction predictPixels(BufferedImage image, double micronsPerPixel, long originX, long originY,
            Region region, boolean tissueOnly) {
        return predictPixels(image, micronsPerPixel, originX, originY, region, tissueOnly, null, null);
    }

    /**
     * Predicts expression for the grid spots of pixels the caller holds: {@code image}, whose
     * top-left pixel is at ({@code originX}, {@code originY}) in level-0 pixels of the slide.
     * Only the image's pixels are seen: read those of {@link #pixelContext} to match
     * {@link #predictRegion}.
     *
     * @param micronsPerPixel level-0 resolution (&gt; 0)
     * @param region level-0 rectangle to predict; {@code null}: the whole image
     * @param tissueOnly leave out spots on glass
     * @param cancel ends the prediction with {@link Status#CANCELLED} when raised; may be null
     * @param progress told the encoder's progress; may be null
     */
    public Prediction predictPixels(BufferedImage image, double micronsPerPixel, long originX, long originY,
            Region region, boolean tissueOnly, CancelToken cancel, ProgressListener progress) {
        Memory pixels = Pixels.rgba(image);
        try {
            return predict(cancel, progress, (engine, request) -> {
                PointerByReference out = new PointerByReference();
                Spahgc.check(Spahgc.lib().spahgc_predict_pixels(engine, pixels, pixels.size(), image.getWidth(),
                        image.getHeight(), (long) image.getWidth() * Pixels.BYTES_PER_PIXEL, Pixels.FORMAT_RGBA8,
                        micronsPerPixel, originX, originY, Region.nativeOrNull(region), flag(tissueOnly), request,
                        out));
                return out.getValue();
            });
        } finally {
            pixels.close();
        }
    }

    /** Frees the engine after the predictions in flight; closing it again does nothing. */
    @Override
    public void close() {
        handle.close();
    }

    /** A prediction call: the native engine and request in, the native result out. */
    private interface Call {
        Pointer run(Pointer engine, LibSpahgc.Request request);
    }

    private Prediction predict(CancelToken cancel, ProgressListener progress, Call call) {
        Function<Pointer, Prediction> withToken = token -> handle.use(engine -> {
            LibSpahgc.Request request = request(token, progress);
            Pointer result = call.run(engine, request);
            try {
                return readResult(Spahgc.lib(), result, genes);
            } finally {
                Spahgc.lib().spahgc_result_free(result);
            }
        });
        return cancel == null ? withToken.apply(null) : cancel.use(withToken);
    }

    private static LibSpahgc.Request request(Pointer token, ProgressListener progress) {
        if (token == null && progress == null) {
            return null;
        }
        LibSpahgc.Request request = new LibSpahgc.Request();
        request.cancel = token;
        if (progress != null) {
            request.progress = (user, done, total) -> progress.progress(done, total);
        }
        return request;
    }

    private static byte flag(boolean value) {
        return (byte) (value ? 1 : 0);
    }

    private static List<String> readGenes(LibSpahgc lib, Pointer engine) {
        long[] count = new long[1];
        Spahgc.check(lib.spahgc_engine_gene_count(engine, count));
        List<String> names = new ArrayList<>();
        PointerByReference name = new PointerByReference();
        for (long i = 0; i < count[0]; i++) {
            Spahgc.check(lib.spahgc_engine_gene_name(engine, i, name));
            names.add(name.getValue().getString(0, "UTF-8"));
        }
        return List.copyOf(names);
    }

    private static Prediction readResult(LibSpahgc lib, Pointer result, List<String> genes) {
        long[] count = new long[1];
        Spahgc.check(lib.spahgc_result_spot_count(result, count));
        int spots = Math.toIntExact(count[0]);
        Spahgc.check(lib.spahgc_result_gene_count(result, count));
        if (count[0] != genes.size()) {
            throw new IllegalStateException("a result of " + count[0] + " genes from an engine of " + genes.size());
        }
        double[] diameter = new double[1];
        double[] mpp = new double[1];
        Spahgc.check(lib.spahgc_result_grid(result, diameter, mpp));
        List<String> ids = new ArrayList<>(spots);
        PointerByReference id = new PointerByReference();
        for (int i = 0; i < spots; i++) {
            Spahgc.check(lib.spahgc_result_spot_id(result, i, id));
            ids.add(id.getValue().getString(0, "UTF-8"));
        }
        double[] centres = new double[2 * spots];
        Spahgc.check(lib.spahgc_result_centres(result, centres, centres.length));
        byte[] tissue = new byte[spots];
        Spahgc.check(lib.spahgc_result_in_tissue(result, tissue, tissue.length));
        boolean[] inTissue = new boolean[spots];
        for (int i = 0; i < spots; i++) {
            inTissue[i] = tissue[i] != 0;
        }
        float[] values = new float[Math.multiplyExact(spots, genes.size())];
        Spahgc.check(lib.spahgc_result_values(result, values, values.length));
        return new Prediction(ids, centres, inTissue, diameter[0], mpp[0], genes, values);
    }
}
