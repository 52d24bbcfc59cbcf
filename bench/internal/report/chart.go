package report

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/vessel-containers/vessel/bench/internal/stats"
)

// series is one box of a chart: a label and its samples.
type series struct {
	label   string
	samples []float64
	color   color.Color
}

var (
	vesselColor = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	runcColor   = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	floorColor  = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
)

// Chart draws two panels into a PNG: the distributions of the floor, cold-start and exec
// times, and the PSS per idle sandbox (parallel starts take ten times longer and would
// flatten the first panel; they are in the tables). Each box shows the samples' quartiles, with every sample drawn as
// a point over it.
func Chart(r *Results, path string) error {
	timePlot, err := boxes("Start and exec times (every run)", "seconds", timeSeries(r))
	if err != nil {
		return err
	}
	memPlot, err := boxes("PSS per idle sandbox", "MiB", memorySeries(r))
	if err != nil {
		return err
	}
	const w, h = 16 * vg.Inch, 6 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 4, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 8}
	timePlot.Draw(tiles.At(dc, 0, 0))
	memPlot.Draw(tiles.At(dc, 1, 0))
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("chart: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

func timeSeries(r *Results) []series {
	var s []series
	add := func(label string, sum stats.Summary, c color.Color) {
		if sum.N > 0 {
			s = append(s, series{label, sum.Samples, c})
		}
	}
	if r.Floor != nil {
		add("floor", r.Floor.Boot, floorColor)
	}
	if c := r.Cold; c != nil {
		add("vessel true", c.Vessel.True, vesselColor)
		add("vessel echo\n(output)", c.Vessel.EchoOutput, vesselColor)
		add("runc true", c.Runc.True, runcColor)
		add("runc echo\n(output)", c.Runc.EchoOutput, runcColor)
	}
	if w := r.Warm; w != nil {
		for _, m := range w.Modes {
			add("vessel true\n("+m.Name+")", m.True, vesselColor)
		}
	}
	if e := r.Exec; e != nil {
		add("vessel exec", e.Vessel, vesselColor)
		add("runc exec", e.Runc, runcColor)
	}
	return s
}

func memorySeries(r *Results) []series {
	var s []series
	if m := r.Memory; m != nil {
		for _, p := range m.Points {
			c := vesselColor
			if p.Runtime == Runc {
				c = runcColor
			}
			if p.PerSandbox.N > 0 {
				s = append(s, series{fmt.Sprintf("%s ×%d", p.Runtime, p.Sandboxes), p.PerSandbox.Samples, c})
			}
		}
	}
	if w := r.Warm; w != nil && w.Memory != nil && w.Memory.PerSandbox.N > 0 {
		s = append(s, series{fmt.Sprintf("vessel ×%d\n(template)", w.Memory.Sandboxes), w.Memory.PerSandbox.Samples, vesselColor})
	}
	if d := r.Density; d != nil && d.PerSandbox.N > 0 {
		s = append(s, series{fmt.Sprintf("vessel ×%d\n(density)", d.Started), d.PerSandbox.Samples, vesselColor})
	}
	return s
}

// boxes makes a plot with one box per series and its samples as points.
func boxes(title, unit string, series []series) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = unit
	p.Y.Min = 0
	top := 0.0
	names := make([]string, len(series))
	for i, s := range series {
		names[i] = s.label
		vals := plotter.Values(s.samples)
		box, err := plotter.NewBoxPlot(vg.Points(28), float64(i), vals)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", s.label, err)
		}
		box.FillColor = lighten(s.color)
		box.BoxStyle.Color = s.color
		p.Add(box)
		pts := make(plotter.XYs, len(s.samples))
		for j, v := range s.samples {
			top = max(top, v)
			// Spread the points a little so that equal values stay visible.
			off := 0.0
			if len(s.samples) > 1 {
				off = (float64(j)/float64(len(s.samples)-1) - 0.5) * 0.3
			}
			pts[j] = plotter.XY{X: float64(i) + off, Y: v}
		}
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", s.label, err)
		}
		sc.Color = s.color
		sc.Radius = vg.Points(2)
		p.Add(sc)
	}
	if top > 0 {
		p.Y.Max = top * 1.08 // headroom: the highest box is not cut by the frame
	}
	if len(names) > 0 {
		p.NominalX(names...)
	} else {
		p.X.Label.Text = "(not measured)"
	}
	p.Add(plotter.NewGrid())
	return p, nil
}

func lighten(c color.Color) color.Color {
	r, g, b, _ := c.RGBA()
	mix := func(v uint32) uint8 { return uint8((v>>8 + 2*255) / 3) }
	return color.RGBA{R: mix(r), G: mix(g), B: mix(b), A: 0xff}
}
