// Multi-threaded CPU renderer for 3D Gaussians (inference only, float32).
//
// One call renders one pinhole camera: EWA projection, SH colours, depth sort, tile
// binning and compositing. The maths is that of recon3d/render/projection.py and
// torch_rasterizer.py (gsplat's classic pinhole model):
//   Sigma2D = J W Sigma W^T J^T + eps2d I, J at the mean with x/z, y/z clamped to 1.3x
//   the frustum; culled when z is outside [near, far], det <= 0, opacity < alpha_min or
//   the box misses the image; colour = max(SH(mean - camera centre) + 0.5, 0);
//   per pixel, front to back: alpha = min(alpha_max, o exp(-sigma)),
//   sigma = 1/2 d^T conic d with d = mean - pixel centre (j + 0.5, i + 0.5); skip when
//   sigma < 0 or alpha < alpha_min; stop at the first Gaussian whose composite would
//   take the transmittance to t_min or below (that one is not composited).
//
// Speed comes from doing each step once per Gaussian in registers, SIMD over the 16
// pixels of a tile row, and work avoidance that changes no pixel:
//  * each tile's list is in depth order (one global radix sort, then a stable fill), and
//    a tile stops once all its pixels have stopped;
//  * a Gaussian visits only the rows of its tile that cross the ellipse where
//    alpha >= alpha_min is possible (bounds widened by a safety margin); every pixel of
//    a visited row runs the exact test above.
//
// Plain C ABI (loaded with ctypes) and std::thread: no Python or torch headers, so it
// compiles in seconds, and no OpenMP runtime that could clash with the one torch ships.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

namespace {

// Tile side in pixels, as TILE_SIZE in projection.py.
constexpr int kTile = 16;
constexpr int kMaxDim = 4;
// Slack on the ellipse bound, in exponent units, so rounding in the float32 per-pixel
// test can never accept a pixel the row interval excluded.
constexpr double kSigmaSlack = 1e-2;
constexpr double kPixelSlack = 1e-3;

struct Settings {
    int width, height;
    float eps2d, near_plane, far_plane, alpha_min, alpha_max, t_min, extent;
    int sh_degree, n_coeffs, with_rgb, with_depth;
};

// A projected Gaussian (one cache line): screen-space parameters, features, and the
// ellipse {sigma <= sigma_max} outside which alpha < alpha_min: rows within y_extent of
// the centre, per row an interval from the quadratic in x. exact == false (degenerate
// conic) visits every row of its tiles.
struct alignas(64) Splat {
    float mx, my, a, b, c, opacity, depth;
    float feat[kMaxDim];
    float inv_a, det, sigma_max, y_extent;
    bool exact;
};

// Half-open ranges of tiles covered by a Gaussian's screen box.
struct TileRange {
    int32_t x0, x1, y0, y1;
};

template <typename Fn>
void parallel_for(int64_t n, int64_t chunk, int n_threads, Fn fn) {
    std::atomic<int64_t> next{0};
    auto worker = [&]() {
        for (int64_t lo = next.fetch_add(chunk); lo < n; lo = next.fetch_add(chunk))
            for (int64_t i = lo; i < std::min(n, lo + chunk); ++i) fn(i);
    };
    std::vector<std::thread> pool;
    for (int i = 1; i < n_threads; ++i) pool.emplace_back(worker);
    worker();
    for (auto &th : pool) th.join();
}

// Real SH with the Condon-Shortley phase (3DGS / gsplat constants) at unit (x, y, z).
void sh_basis(int degree, float x, float y, float z, float *out) {
    out[0] = 0.28209479177387814f;
    if (degree < 1) return;
    out[1] = -0.4886025119029199f * y;
    out[2] = 0.4886025119029199f * z;
    out[3] = -0.4886025119029199f * x;
    if (degree < 2) return;
    const float xx = x * x, yy = y * y, zz = z * z;
    out[4] = 1.0925484305920792f * x * y;
    out[5] = -1.0925484305920792f * y * z;
    out[6] = 0.31539156525252005f * (2.0f * zz - xx - yy);
    out[7] = -1.0925484305920792f * x * z;
    out[8] = 0.5462742152960396f * (xx - yy);
    if (degree < 3) return;
    out[9] = -0.5900435899266435f * y * (3.0f * xx - yy);
    out[10] = 2.890611442640554f * x * y * z;
    out[11] = -0.4570457994644658f * y * (4.0f * zz - xx - yy);
    out[12] = 0.3731763325901154f * z * (2.0f * zz - 3.0f * xx - 3.0f * yy);
    out[13] = -0.4570457994644658f * x * (4.0f * zz - xx - yy);
    out[14] = 1.445305721320277f * z * (xx - yy);
    out[15] = -0.5900435899266435f * x * (xx - 3.0f * yy);
}

// Project Gaussian g into s and tr; returns false when it is culled.
bool project(
    int64_t g, const Settings &st, const float *means, const float *quats, const float *scales,
    const float *opacities, const float *sh, const float *view, const float *K, const float *campos,
    Splat &s, TileRange &tr
) {
    const float *m = means + 3 * g;
    float mc[3];
    for (int r = 0; r < 3; ++r)
        mc[r] = view[4 * r] * m[0] + view[4 * r + 1] * m[1] + view[4 * r + 2] * m[2] + view[4 * r + 3];
    const float z = mc[2];
    if (!(z >= st.near_plane && z <= st.far_plane)) return false;
    const float opacity = opacities[g];
    if (!(opacity >= st.alpha_min)) return false;

    // Sigma = (R S)(R S)^T with R from the normalised quaternion (w, x, y, z).
    const float *q = quats + 4 * g;
    const float qn = std::max(std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]), 1e-12f);
    const float w = q[0] / qn, x = q[1] / qn, y = q[2] / qn, zq = q[3] / qn;
    const float rot[3][3] = {
        {1 - 2 * (y * y + zq * zq), 2 * (x * y - w * zq), 2 * (x * zq + w * y)},
        {2 * (x * y + w * zq), 1 - 2 * (x * x + zq * zq), 2 * (y * zq - w * x)},
        {2 * (x * zq - w * y), 2 * (y * zq + w * x), 1 - 2 * (x * x + y * y)},
    };
    const float *sc = scales + 3 * g;
    float ms[3][3], cov[3][3], tmp[3][3], cov_c[3][3];
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) ms[r][k] = rot[r][k] * sc[k];
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) cov[r][k] = ms[r][0] * ms[k][0] + ms[r][1] * ms[k][1] + ms[r][2] * ms[k][2];
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k)
            tmp[r][k] = view[4 * r] * cov[0][k] + view[4 * r + 1] * cov[1][k] + view[4 * r + 2] * cov[2][k];
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k)
            cov_c[r][k] = tmp[r][0] * view[4 * k] + tmp[r][1] * view[4 * k + 1] + tmp[r][2] * view[4 * k + 2];

    // Jacobian of the pinhole at the mean, with x/z and y/z clamped to 1.3x the frustum.
    const float fx = K[0], cx = K[2], fy = K[4], cy = K[5];
    const float tan_x = 0.5f * st.width / fx, tan_y = 0.5f * st.height / fy;
    const float lim_xp = (st.width - cx) / fx + 0.3f * tan_x, lim_xn = cx / fx + 0.3f * tan_x;
    const float lim_yp = (st.height - cy) / fy + 0.3f * tan_y, lim_yn = cy / fy + 0.3f * tan_y;
    const float tx = z * std::min(lim_xp, std::max(-lim_xn, mc[0] / z));
    const float ty = z * std::min(lim_yp, std::max(-lim_yn, mc[1] / z));
    const float j00 = fx / z, j02 = -fx * tx / (z * z), j11 = fy / z, j12 = -fy * ty / (z * z);
    // cov2d = J cov_c J^T with J = [[j00, 0, j02], [0, j11, j12]].
    const float r0[3] = {j00 * cov_c[0][0] + j02 * cov_c[2][0], j00 * cov_c[0][1] + j02 * cov_c[2][1],
                         j00 * cov_c[0][2] + j02 * cov_c[2][2]};
    const float r1[3] = {j11 * cov_c[1][0] + j12 * cov_c[2][0], j11 * cov_c[1][1] + j12 * cov_c[2][1],
                         j11 * cov_c[1][2] + j12 * cov_c[2][2]};
    const float a = r0[0] * j00 + r0[2] * j02 + st.eps2d;
    const float b = r0[1] * j11 + r0[2] * j12;
    const float c = r1[1] * j11 + r1[2] * j12 + st.eps2d;
    const float det = a * c - b * b;
    if (!(det > 0.0f)) return false;

    s.mx = fx * mc[0] / z + cx;
    s.my = fy * mc[1] / z + cy;
    s.a = c / det;
    s.b = -b / det;
    s.c = a / det;
    s.opacity = opacity;
    s.depth = z;

    // Screen box: beyond Mahalanobis distance sqrt(2 ln(o / alpha_min)) alpha < alpha_min.
    const float extent = std::min(st.extent, std::sqrt(2.0f * std::log(std::max(opacity / st.alpha_min, 1.0f))));
    const float rx = std::ceil(extent * std::sqrt(a)), ry = std::ceil(extent * std::sqrt(c));
    if (rx <= 0.0f && ry <= 0.0f) return false;
    if (s.mx + rx <= 0.0f || s.mx - rx >= st.width || s.my + ry <= 0.0f || s.my - ry >= st.height) return false;
    const int tiles_x = (st.width + kTile - 1) / kTile, tiles_y = (st.height + kTile - 1) / kTile;
    const float gx = s.mx / kTile, gy = s.my / kTile, hx = rx / kTile, hy = ry / kTile;
    tr.x0 = (int32_t)std::clamp(std::floor(gx - hx), 0.0f, (float)tiles_x);
    tr.x1 = (int32_t)std::clamp(std::ceil(gx + hx), 0.0f, (float)tiles_x);
    tr.y0 = (int32_t)std::clamp(std::floor(gy - hy), 0.0f, (float)tiles_y);
    tr.y1 = (int32_t)std::clamp(std::ceil(gy + hy), 0.0f, (float)tiles_y);

    const double da = s.a, db = s.b, dc = s.c, det_d = da * dc - db * db;
    const double sigma_max = std::log(std::max((double)opacity / st.alpha_min, 1.0)) + kSigmaSlack;
    s.exact = da > 0.0 && det_d > 0.0 && std::isfinite(da * dc) && std::isfinite(1.0f / (float)da);
    s.det = (float)det_d;
    s.inv_a = s.exact ? (float)(1.0 / da) : 0.0f;
    s.sigma_max = (float)sigma_max;
    s.y_extent = s.exact ? (float)std::sqrt(2.0 * sigma_max * da / det_d) : INFINITY;

    int d = 0;
    if (st.with_rgb) {
        float dir[3] = {m[0] - campos[0], m[1] - campos[1], m[2] - campos[2]};
        const float len = std::max(std::sqrt(dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]), 1e-12f);
        float basis[16];
        sh_basis(st.sh_degree, dir[0] / len, dir[1] / len, dir[2] / len, basis);
        const int used = (st.sh_degree + 1) * (st.sh_degree + 1);
        const float *coeffs = sh + (int64_t)g * st.n_coeffs * 3;
        for (int ch = 0; ch < 3; ++ch) {
            float v = 0.0f;
            for (int k = 0; k < used; ++k) v += basis[k] * coeffs[3 * k + ch];
            s.feat[d++] = std::max(v + 0.5f, 0.0f);
        }
    }
    if (st.with_depth) s.feat[d] = z;
    return true;
}

// exp(x) for x <= 0 in a form compilers vectorise: Cody-Waite range reduction and the
// Cephes single-precision polynomial (about 1 ulp, like the exp torch uses). Inputs are
// clamped to [-87, 0]: below, exp(-87) stands in for a denormal (callers compare it
// with 1/255); above, only for sigma < 0, which callers reject.
inline float exp_nonpos(float x) {
    x = std::min(std::max(x, -87.0f), 0.0f);
    const float t = x * 1.44269504088896341f;
    const int n = (int)(t - 0.5f);  // for t <= 0, truncating t - 0.5 rounds t to nearest
    const float fn = (float)n;
    const float r = (x - fn * 0.693359375f) + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (n + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// First and last pixel index in [lo, hi) whose centre (index + 0.5) may lie at or after / at or
// before the coordinate v.
inline int first_index(double v, int lo, int hi) {
    return (int)std::clamp(std::ceil(v - 0.5 - kPixelSlack), (double)lo, (double)hi);
}
inline int last_index(double v, int lo, int hi) {
    return (int)std::clamp(std::floor(v - 0.5 + kPixelSlack), (double)lo - 1, (double)hi - 1);
}

// A pixel's transmittance is stored negated once it has stopped, so a row of pixels is
// updated branch-free.
// Composite one tile; returns the number of blends (pixel-Gaussian composites) done.
template <int D>
int64_t render_tile(
    int tile_id, int tiles_x, const Settings &st, const Splat *splats, const int32_t *ids, int64_t begin,
    int64_t end, const float *background, float *colors, float *alphas
) {
    const int x0 = (tile_id % tiles_x) * kTile, y0 = (tile_id / tiles_x) * kTile;
    const int x1 = std::min(x0 + kTile, st.width), y1 = std::min(y0 + kTile, st.height);
    alignas(64) float trans[kTile * kTile];
    alignas(64) float acc[D][kTile * kTile];
    alignas(64) float weight_sum[kTile * kTile];  // the alpha, summed as in the torch backend
    alignas(64) float lane_x[kTile];
    // Lanes past the image edge start as stopped, so they never blend or count.
    for (int p = 0; p < kTile * kTile; ++p) trans[p] = (x0 + p % kTile < x1) ? 1.0f : -1.0f;
    for (int d = 0; d < D; ++d) std::fill(acc[d], acc[d] + kTile * kTile, 0.0f);
    std::fill(weight_sum, weight_sum + kTile * kTile, 0.0f);
    for (int l = 0; l < kTile; ++l) lane_x[l] = (float)(x0 + l) + 0.5f;
    int active = (x1 - x0) * (y1 - y0);
    int64_t blends = 0;
    const float alpha_min = st.alpha_min, alpha_max = st.alpha_max, t_min = st.t_min;

    for (int64_t k = begin; k < end && active > 0; ++k) {
        const Splat &s = splats[ids[k]];
        const int row_lo = first_index(s.my - s.y_extent, y0, y1);
        const int row_hi = last_index(s.my + s.y_extent, y0, y1);
        for (int i = row_lo; i <= row_hi; ++i) {
            if (s.exact) {
                // Skip rows whose slice of the ellipse misses this tile's columns.
                const double dyd = (double)s.my - (i + 0.5);
                const double inv_a = s.inv_a;
                const double disc = 2.0 * (double)s.sigma_max / inv_a - (double)s.det * dyd * dyd;
                if (disc < 0.0) continue;
                const double half = std::sqrt(disc) * inv_a, centre = s.mx + s.b * dyd * inv_a;
                if (centre + half < x0 + 0.5 - kPixelSlack || centre - half > x1 - 0.5 + kPixelSlack) continue;
            }
            // All 16 pixels of the row at once (two AVX2 vectors): cheaper than trimming
            // the row to the ellipse's columns.
            const float dy = s.my - ((float)i + 0.5f);
            float *tr = trans + (i - y0) * kTile;
            int stopped = 0, blended = 0;
            for (int l = 0; l < kTile; ++l) {
                const float dx = s.mx - lane_x[l];
                const float sigma = 0.5f * (s.a * dx * dx + s.c * dy * dy) + s.b * dx * dy;
                const float alpha = std::min(alpha_max, s.opacity * exp_nonpos(-sigma));
                const float t = tr[l];
                const float next_t = t * (1.0f - alpha);
                const bool hit = (t > 0.0f) & (sigma >= 0.0f) & (alpha >= alpha_min);
                const bool stop = hit & (next_t <= t_min);
                const bool blend = hit & !stop;
                const float w = blend ? alpha * t : 0.0f;
                for (int d = 0; d < D; ++d) acc[d][(i - y0) * kTile + l] += s.feat[d] * w;
                weight_sum[(i - y0) * kTile + l] += w;
                tr[l] = stop ? -t : (blend ? next_t : t);
                stopped += stop;
                blended += blend;
            }
            active -= stopped;
            blends += blended;
        }
    }

    for (int i = y0; i < y1; ++i) {
        for (int j = x0; j < x1; ++j) {
            const int p = (i - y0) * kTile + (j - x0);
            const int64_t q = (int64_t)i * st.width + j;
            for (int d = 0; d < D; ++d)
                colors[q * D + d] = acc[d][p] + (background ? (1.0f - weight_sum[p]) * background[d] : 0.0f);
            alphas[q] = weight_sum[p];
        }
    }
    return blends;
}

template <int D>
int64_t composite(
    const Settings &st, const std::vector<Splat> &splats, const std::vector<int32_t> &ids,
    const std::vector<int64_t> &offsets, const float *background, float *colors, float *alphas, int n_threads
) {
    const int tiles_x = (st.width + kTile - 1) / kTile;
    const int n_tiles = (int)offsets.size() - 1;
    // Longest lists first: with dynamic hand-out the threads then finish together.
    std::vector<int32_t> order(n_tiles);
    for (int t = 0; t < n_tiles; ++t) order[t] = t;
    std::stable_sort(order.begin(), order.end(), [&](int32_t l, int32_t r) {
        return offsets[l + 1] - offsets[l] > offsets[r + 1] - offsets[r];
    });
    std::atomic<int64_t> blends{0};
    parallel_for(n_tiles, 1, n_threads, [&](int64_t n) {
        const int t = order[n];
        blends += render_tile<D>(t, tiles_x, st, splats.data(), ids.data(), offsets[t], offsets[t + 1], background,
                                 colors, alphas);
    });
    return blends;
}

// Indices of keys in ascending order, ties in index order (LSD radix sort on the
// order-preserving integer image of the float keys).
std::vector<int32_t> argsort_floats(const std::vector<float> &keys) {
    const size_t n = keys.size();
    std::vector<uint32_t> key(n), key_tmp(n);
    std::vector<int32_t> idx(n), idx_tmp(n);
    for (size_t k = 0; k < n; ++k) {
        uint32_t bits;
        std::memcpy(&bits, &keys[k], sizeof bits);
        key[k] = bits ^ ((bits >> 31) ? 0xFFFFFFFFu : 0x80000000u);
        idx[k] = (int32_t)k;
    }
    for (int shift = 0; shift < 32; shift += 8) {
        size_t count[257] = {0};
        for (size_t k = 0; k < n; ++k) ++count[((key[k] >> shift) & 0xFF) + 1];
        for (int b = 0; b < 256; ++b) count[b + 1] += count[b];
        for (size_t k = 0; k < n; ++k) {
            const size_t dst = count[(key[k] >> shift) & 0xFF]++;
            key_tmp[dst] = key[k];
            idx_tmp[dst] = idx[k];
        }
        key.swap(key_tmp);
        idx.swap(idx_tmp);
    }
    return idx;
}
}  // namespace

extern "C" {

// Render n Gaussians into one camera.
//   means [n,3], quats [n,4] (w,x,y,z), scales [n,3], opacities [n], sh [n,n_coeffs,3]:
//     float32, C-contiguous (sh may be NULL when with_rgb == 0).
//   view [4,4] world-to-camera, K [3,3] pixel intrinsics, campos [3] camera centre.
//   Output features per pixel: RGB if with_rgb, then accumulated camera z if with_depth;
//   colors [height, width, dim] and alphas [height, width], float32.
//   alphas are the summed blend weights (1 - transmittance in exact arithmetic, but
//   precise for faint pixels); background [dim] or NULL is added with weight 1 - alpha.
//   n_blends (or NULL) receives the number of pixel-Gaussian composites.
// Returns 0 on success, 1 for bad arguments, 2 when memory ran out, 3 when threads
// could not be started.
int recon3d_render(
    int64_t n, const float *means, const float *quats, const float *scales, const float *opacities,
    const float *sh, int n_coeffs, int sh_degree, const float *view, const float *K, const float *campos,
    int width, int height, float eps2d, float near_plane, float far_plane, float alpha_min,
    float alpha_max, float t_min, float extent, int with_rgb, int with_depth, const float *background,
    float *colors, float *alphas, int64_t *n_blends, int n_threads
) {
    const int dim = 3 * (with_rgb != 0) + (with_depth != 0);
    if (n < 0 || dim < 1 || width < 1 || height < 1 || sh_degree < 0 ||
        sh_degree > 3 || (with_rgb && n_coeffs < (sh_degree + 1) * (sh_degree + 1)))
        return 1;
    const Settings st{width, height, eps2d, near_plane, far_plane, alpha_min, alpha_max, t_min, extent,
                      sh_degree, n_coeffs, with_rgb != 0, with_depth != 0};
    n_threads = std::max(1, n_threads);
    try {
        // Default-initialised (not zeroed): every kept entry is written by project().
        std::unique_ptr<Splat[]> all(new Splat[n]);
        std::unique_ptr<TileRange[]> ranges(new TileRange[n]);
        std::vector<unsigned char> keep(n);
        parallel_for(n, 4096, n_threads, [&](int64_t g) {
            keep[g] = project(g, st, means, quats, scales, opacities, sh, view, K, campos, all[g], ranges[g]);
        });

        // Nearest first (index breaks ties, like a stable sort), compacted so that a
        // tile's list reads the splats in memory order.
        std::vector<float> depth;
        std::vector<int32_t> kept;
        depth.reserve(n);
        kept.reserve(n);
        for (int64_t g = 0; g < n; ++g) {
            if (!keep[g]) continue;
            depth.push_back(all[g].depth);
            kept.push_back((int32_t)g);
        }
        const std::vector<int32_t> order = argsort_floats(depth);
        std::vector<Splat> splats(order.size());
        std::vector<TileRange> boxes(order.size());
        for (size_t k = 0; k < order.size(); ++k) {
            splats[k] = all[kept[order[k]]];
            boxes[k] = ranges[kept[order[k]]];
        }
        all.reset();
        ranges.reset();

        // Bin in depth order, so every tile's run stays sorted by depth.
        const int tiles_x = (width + kTile - 1) / kTile, tiles_y = (height + kTile - 1) / kTile;
        std::vector<int64_t> offsets((size_t)tiles_x * tiles_y + 1, 0);
        for (const TileRange &b : boxes)
            for (int ty = b.y0; ty < b.y1; ++ty)
                for (int tx = b.x0; tx < b.x1; ++tx) ++offsets[ty * tiles_x + tx + 1];
        for (size_t t = 1; t < offsets.size(); ++t) offsets[t] += offsets[t - 1];
        std::vector<int32_t> ids(offsets.back());
        std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
        for (size_t k = 0; k < boxes.size(); ++k) {
            const TileRange &b = boxes[k];
            for (int ty = b.y0; ty < b.y1; ++ty)
                for (int tx = b.x0; tx < b.x1; ++tx) ids[cursor[ty * tiles_x + tx]++] = (int32_t)k;
        }

        int64_t blends;
        switch (dim) {
        case 1: blends = composite<1>(st, splats, ids, offsets, background, colors, alphas, n_threads); break;
        case 3: blends = composite<3>(st, splats, ids, offsets, background, colors, alphas, n_threads); break;
        default: blends = composite<4>(st, splats, ids, offsets, background, colors, alphas, n_threads); break;
        }
        if (n_blends) *n_blends = blends;
    } catch (const std::bad_alloc &) {
        return 2;
    } catch (const std::system_error &) {
        return 3;
    }
    return 0;
}

}  // extern "C"
